"""One identifier, one battery, across schemes: a passport's ``productIdentifierAliases`` (the same battery as an
IEC 61406 link, an ISO/IEC 15459 identifier, …) are bound to it in ``product_aliases`` by their
``dbp.identifiers.product_key``, and no key may name two passports — whether it is one passport's product key and
another's alias, or two passports' aliases. Keyword-only functions over a session; they flush nothing and raise
``Conflict`` naming the holder.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from dbp.errors import Conflict
from dbp.identifiers import product_key
from dbp.passports.models import Passport, ProductAlias


def bind(session: Session, *, dpp_id: str, product_id: str, key: str, aliases: Sequence[str]) -> None:
    """Make ``product_aliases`` hold exactly ``aliases`` (written forms; validation refused malformed ones and
    duplicates) for ``dpp_id``; Conflict if its product ``key`` is another passport's alias or one of its aliases
    is another passport's product key or alias."""
    held = session.execute(select(ProductAlias.dpp_id).where(ProductAlias.key == key,
                                                              ProductAlias.dpp_id != dpp_id)).first()
    if held is not None:
        raise Conflict(f"product {product_id} is an alias of passport {held.dpp_id}: one identifier never names "
                       "two batteries")
    wanted = {product_key(a): a for a in aliases}
    have = set(session.scalars(select(ProductAlias.key).where(ProductAlias.dpp_id == dpp_id)))
    if not wanted and not have:
        return
    new = [k for k in wanted if k not in have]
    if new:
        for holder, taken in session.execute(select(Passport.dpp_id, Passport.product_key)
                                             .where(Passport.product_key.in_(new), Passport.dpp_id != dpp_id)):
            written = wanted.get(taken or "", taken)
            raise Conflict(f"alias {written} names passport {holder}'s battery: one identifier never names two "
                           "batteries")
        for holder, taken in session.execute(select(ProductAlias.dpp_id, ProductAlias.key)
                                             .where(ProductAlias.key.in_(new), ProductAlias.dpp_id != dpp_id)):
            raise Conflict(f"alias {wanted[taken]} is already an alias of passport {holder}")
    gone = have - set(wanted)
    if gone:
        session.execute(delete(ProductAlias).where(ProductAlias.dpp_id == dpp_id, ProductAlias.key.in_(gone)))
    session.add_all(ProductAlias(key=k, dpp_id=dpp_id) for k in new)


def held_as_alias(session: Session, *, keys: list[str]) -> dict[str, str]:
    """Which of ``keys`` are some passport's alias: key -> that passport (one query, for bulk imports)."""
    if not keys:
        return {}
    return dict(session.execute(select(ProductAlias.key, ProductAlias.dpp_id).where(ProductAlias.key.in_(keys))).all())


def dpp_id_of_alias(session: Session, *, key: str) -> str | None:
    return session.scalar(select(ProductAlias.dpp_id).where(ProductAlias.key == key))
