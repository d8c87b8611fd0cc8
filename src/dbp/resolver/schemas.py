"""The links API's request body."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LinkIn(BaseModel):
    """A link to add (``POST /api/v1/resolver/links``); the service checks every value and names the rule."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    link_type: str = Field(alias="linkType", max_length=200, description="gs1:pip, gs1:sustainabilityInfo, …")
    href: str = Field(max_length=2048, description="https URL template: {dppId} {gtin} {serial} {productId} "
                                                   "{endpoint}")
    title: str = Field(max_length=256)
    type: str | None = Field(default=None, max_length=128, description="media type of the target")
    hreflang: list[str] | None = Field(default=None, max_length=8, description="BCP 47 language tags")
    default: bool = Field(default=False, description="the link the resolver redirects to without linkType")
    operator_id: str | None = Field(default=None, alias="operatorId", max_length=512,
                                    description="the scope's operator (default: the caller's)")
    gtin: str | None = Field(default=None, max_length=14, description="narrow to one GTIN")
    product_id: str | None = Field(default=None, alias="productId", max_length=2048,
                                   description="narrow to one battery (its product identifier)")
