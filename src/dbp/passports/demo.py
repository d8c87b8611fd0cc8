"""Deterministic synthetic battery fleet for demos, tests and benchmarks.

Guarantees of ``generate_fleet`` and ``successor_document``:

* every document is a fresh tree of plain JSON values (str/int/float/bool/list/dict, no ``None``,
  nothing shared between documents) that ``BatteryPassport.model_validate_json`` accepts;
* the same ``seed`` gives identical output: ``random.Random`` only, timestamps derived from fixed
  base dates (fleet readouts 2026-09-06..2026-10-10, second life 2026-10-22..2026-11-25), no clock;
* realism: GS1 Digital Link identifiers with valid GTIN-14 and GLN check digits, real CAS and EC
  numbers (check digits verified at import), category applicability and BMS conditions taken from
  the model's own attribute catalogue, every static mandatory attribute filled, consistent numbers
  (min <= nominal <= max voltage, shares summing to <= 100 %, carbon footprint stages <= total,
  remaining values <= rated values, readouts after manufacture);
* the canonical-JSON fast path applies: integral numbers are ints (never ``1.0``), no exponents, and no
  value with a digit before ``e`` or ``.0`` at its end (hence plain GLNs, not SGLN URNs, and no SHA-256).

Server-managed header fields (dppId, dppSchemaVersion, lastUpdate, predecessor/successor ids,
endOfLife) are never set. Speed (> 5,000 documents/s): the static part of each battery model is
built and serialized once; an item is ``orjson.loads`` of it plus small per-item dicts.
"""

from __future__ import annotations

import dataclasses
import functools
import random
from collections import namedtuple
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import orjson

from dbp.passports.attributes import Requirement, collect_attributes
from dbp.passports.schemas import CONTENT_SPECIFICATION, BatteryPassport

CATEGORY_WEIGHTS = (("ev", 0.45), ("lmt", 0.20), ("industrial", 0.15), ("stationary", 0.20))
OPERATIONS = {"repurposing": "repurposed", "remanufacturing": "remanufactured",
              "preparationForReuse": "re-used"}  # operation -> batteryStatus of the successor
_TS_FLEET = datetime(2026, 9, 20, 8, 0, 0)  # readouts 2026-09-20..2026-10-10, history 14 days back
_TS_SECOND = datetime(2026, 11, 5, 8, 0, 0)  # second-life readouts 2026-11-05..2026-11-25
_SPAN_MIN = 20 * 24 * 60
_MONTHS = [f"{2025 + m // 12}-{m % 12 + 1:02d}" for m in range(20)]  # manufactured 2025-01..2026-08


def gs1_check_digit(digits: str) -> str:
    """GS1 mod-10 check digit: weights 3,1,3,... from the right of the digits before it."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return str(-total % 10)


def cas_valid(cas: str) -> bool:
    """CAS Registry Number check: digits right to left weighted 1,2,3,..., sum mod 10."""
    head, mid, check = cas.split("-")
    return sum(int(d) * i for i, d in enumerate(reversed(head + mid), 1)) % 10 == int(check)


def ec_valid(ec: str) -> bool:
    """EC number check: the first six digits weighted 1..6, sum mod 11."""
    d = ec.replace("-", "")
    return sum(int(x) * i for i, x in enumerate(d[:6], 1)) % 11 == int(d[6])


def _r(x: float, nd: int = 2) -> float | int:
    """Rounded, and an int when integral (JSON ``2`` rather than ``2.0``)."""
    v = round(x, nd)
    return int(v) if v == int(v) else v


# --------------------------------------------------------------------------------- reference data
# Manufacturer: name|trade name|domain|GS1 company prefix|phone|categories|street;postcode;city;country
# followed by an indented line of plants: name;street;postcode;city;country|...
_MANUFACTURERS = """
Voltaris Energy GmbH|VOLTARIS|voltaris|4068194|+49 5341 8870-0|ev stationary|Industriestraße 12;38239;Salzgitter;DE
 Gigafactory Salzgitter;Industriestraße 40;38239;Salzgitter;DE|Werk Zwickau;Kopernikusstraße 7;08056;Zwickau;DE
Nordcell Batteries AB|NORDCELL|nordcell|7350093|+46 910 77 100|ev industrial|Cellvägen 1;931 36;Skellefteå;SE
 Skellefteå Cell Plant;Cellvägen 5;931 36;Skellefteå;SE|Västerås Pack Plant;Kraftgatan 20;721 36;Västerås;SE
Cellunor Industries SAS|CELLUNOR|cellunor|3760218|+33 3 27 99 40 00|ev lmt|12 rue de l'Énergie;59500;Douai;FR
 Usine de Douai;Zone Industrielle Nord;59500;Douai;FR|Usine de Dunkerque;Route du Port 8;59140;Dunkerque;FR
Ibérica Baterías S.L.|IBERBAT|iberbat|8437015|+34 962 65 40 00|lmt stationary|Calle Batería 4;46520;Sagunto;ES
 Planta Sagunto;Parc Sagunt II 7;46520;Sagunto;ES|Planta Navalmoral;Polígono 3;10300;Navalmoral de la Mata;ES
Polonia Accu Sp. z o.o.|POLACCU|polaccu|5904417|+48 71 300 40 00|ev industrial stationary|Ogniwowa 9;55-040;Wrocław;PL
 Zakład Kobierzyce;ul. Energetyczna 2;55-040;Kobierzyce;PL|Zakład Jawor;ul. Przemysłowa 14;59-400;Jawor;PL
Danubia Storage Kft.|DANUBIA|danubia|5998823|+36 52 500 700|stationary industrial|Energia utca 5;4031;Debrecen;HU
 Debrecen Plant;Határ út 22;4031;Debrecen;HU|Iváncsa Plant;Ipari út 1;2454;Iváncsa;HU|Győr Plant;Ipari 3;9027;Győr;HU
Baltic Power Cells UAB|BALTCELL|baltcell|4779102|+370 37 400 500|lmt industrial|Pramonės pr. 16;51329;Kaunas;LT
 Kaunas FEZ Plant;Ramybės g. 4;54460;Kaunas;LT|Šiauliai Plant;Pramonės g. 10;78137;Šiauliai;LT
"""
_SECOND_LIFE = """
Second Life Storage GmbH|SECONDLIFE|second-life-storage|4250731|+49 341 2250-0||Kreislaufweg 3;04129;Leipzig;DE
 Repurposing Centre Leipzig;Kreislaufweg 5;04129;Leipzig;DE
"""

_ANODE = [("Graphite", "7782-42-5", 14.8), ("Copper foil", "7440-50-8", 7.1), ("SBR binder", "9003-55-8", 0.3),
          ("Carboxymethyl cellulose", "9004-32-4", 0.2)]
_ELECTROLYTE = [("Lithium hexafluorophosphate", "21324-40-3", 1.4), ("Ethylene carbonate", "96-49-1", 4.1),
                ("Dimethyl carbonate", "616-38-6", 3.2), ("Ethyl methyl carbonate", "623-53-0", 2.6)]
_SEPARATOR = [("Polyethylene", "9002-88-4", 1.5), ("Aluminium oxide coating", "1344-28-1", 0.2)]
_CATHODE_REST = [("Aluminium foil", "7429-90-5", 3.2), ("PVDF", "24937-79-9", 0.6), ("Carbon black", "1333-86-4", 0.5)]
_CRM_COMMON = [("Lithium", "7439-93-2", 1.5), ("Natural graphite", "7782-42-5", 14.8), ("Copper", "7440-50-8", 7.1),
               ("Aluminium", "7429-90-5", 9.6)]
# name, CAS, EC, hazard classes (CLP), location
_HAZARDS = {
    "Ni": ("Nickel compounds", "7440-02-0", "231-111-4", ["Carc. 2", "Skin Sens. 1", "STOT RE 1"], "cathode"),
    "Co": ("Cobalt compounds", "7440-48-4", "231-158-0", ["Carc. 1B", "Repr. 1B", "Skin Sens. 1"], "cathode"),
    "LiPF6": ("Lithium hexafluorophosphate", "21324-40-3", "244-334-7", ["Acute Tox. 3", "Skin Corr. 1A"],
              "electrolyte"),
    "EC": ("Ethylene carbonate", "96-49-1", "202-510-0", ["Eye Irrit. 2", "STOT RE 2"], "electrolyte"),
    "DMC": ("Dimethyl carbonate", "616-38-6", "210-478-4", ["Flam. Liq. 2"], "electrolyte"),
}


# clear name; cell volts (nominal, minimum, maximum); pack Wh/kg; cycle-life range; carbon footprint range
# (kgCO2e/kWh); initial round-trip efficiency %; cathode active material (name, CAS or "", % w/w of the
# battery); critical raw materials beyond _CRM_COMMON; hazardous substances (_HAZARDS key -> % w/w)
_Chem = namedtuple("_Chem", "clear volts wh_kg cycles cf rte cathode crm hazards")
_ELY = {"LiPF6": 1.4, "EC": 4.1, "DMC": 3.2}
_CHEM = {
    "NMC811": _Chem("Lithium nickel manganese cobalt oxide (8:1:1) / graphite", (3.65, 2.5, 4.2), 175, (1500, 2200),
                    (68, 92), 95.2, ("NMC811 cathode active material", "346417-97-8", 24.5),
                    [("Cobalt", "7440-48-4", 1.5), ("Nickel", "7440-02-0", 11.8), ("Manganese", "7439-96-5", 1.1)],
                    {"Ni": 11.8, "Co": 1.5, **_ELY}),
    "NCA": _Chem("Lithium nickel cobalt aluminium oxide / graphite", (3.6, 2.5, 4.2), 180, (1000, 1600),
                 (70, 95), 94.8, ("NCA cathode active material", "193214-24-3", 25.0),
                 [("Cobalt", "7440-48-4", 1.2), ("Nickel", "7440-02-0", 12.9)], {"Ni": 12.9, "Co": 1.2, **_ELY}),
    "LFP": _Chem("Lithium iron phosphate / graphite", (3.2, 2.5, 3.65), 135, (3500, 6000), (52, 70), 96.1,
                 ("Lithium iron phosphate", "15365-14-7", 28.0), [("Phosphorus", "7723-14-0", 5.4)], _ELY),
    "LMFP": _Chem("Lithium manganese iron phosphate / graphite", (3.7, 2.5, 4.3), 150, (2500, 4000), (55, 75), 95.6,
                  ("Lithium manganese iron phosphate", "", 27.5), [("Manganese", "7439-96-5", 5.9),
                  ("Phosphorus", "7723-14-0", 4.9)], _ELY),
}


# chemistries; cells in series (options); in parallel (range); cell Ah (range); maximum C-rate; warranty
# months; lifetime years (range); idle temperature boundaries degC; cycle-life test C-rate; cells in series
# per module; cycle-life reference standard; test reports; spare parts
_Cat = namedtuple("_Cat", "chems series parallel cell_ah c_max warranty years idle c_test module standard reports "
                  "spares")
_CATEGORY = {
    "ev": _Cat(("NMC811", "NCA", "LFP", "LMFP"), (96, 104, 108, 192), (1, 2), (50, 130), 2.5, 96, (10, 15),
               (-40, 60), 0.33, 12, "IEC 62660-1:2018", ("UN 38.3", "UNECE R100", "IEC 62660-2"),
               ("Battery management controller", "Cell module", "HV junction box", "Pyro fuse", "Coolant plate")),
    "lmt": _Cat(("NMC811", "NCA", "LFP"), (10, 13, 14), (3, 8), (4.8, 5.0), 2.0, 24, (5, 8), (-20, 50), 0.5,
                14, "EN 50604-1:2016", ("UN 38.3", "EN 50604-1", "IEC 62133-2"),
                ("Battery management board", "Housing set", "Charging port", "Fuse")),
    "industrial": _Cat(("LFP", "NMC811", "LMFP"), (16, 20, 24), (1, 2), (100, 280), 1.0, 60, (10, 15),
                       (-25, 55), 0.5, 8, "IEC 62620:2014", ("UN 38.3", "IEC 62619", "IEC 62620"),
                       ("Battery management controller", "Cell module", "Main contactor", "Fuse set")),
    "stationary": _Cat(("LFP", "LMFP"), (16, 48, 240), (1, 1), (100, 314), 0.5, 120, (15, 20), (-20, 50),
                       0.25, 16, "IEC 62620:2014", ("UN 38.3", "IEC 62619", "IEC 63056"),
                       ("Battery management unit", "Battery module", "DC breaker", "Rack fan unit")),
}
_TEXT = {
    "meaning": "Crossed-out wheeled bin: separate collection, not with municipal waste (Art. 13(4)). CE: conforms "
               "to Regulation (EU) 2023/1542. QR code: link to this passport. No Cd/Pb symbol: below thresholds.",
    "impact": "Cathode and electrolyte contain carcinogenic, sensitising or corrosive substances (nickel and cobalt "
              "compounds, LiPF6), sealed in the cells in normal use. Damaged or overheated cells may release "
              "flammable vapours and hydrogen fluoride.",
    "prevention": "Avoid deep discharge, storage at full charge and heat; use approved chargers; pass on "
                  "batteries in good condition for re-use or repurposing.",
    "collection": "Never dispose of with household waste: return free of charge to the distributor or a "
                  "collection point of {name}. Tape exposed terminals; report damaged batteries.",
    "treatment": "Take-back via https://www.{domain}.example/take-back; batteries are tested for re-use or "
                 "repurposing, otherwise recycled with recovery of Co, Ni, Li and Cu (Annex XII).",
    "safety": "De-energise and verify absence of voltage before work; wear insulated gloves (1000 V) and face "
              "protection. Store damaged batteries in a ventilated fire-resistant container; cool fires with water.",
    "warnings": "High voltage. Thermal runaway if cells are punctured or short-circuited. Trained personnel only.",
    "cycle": "{std}, 25 °C, 100 % DoD, charge/discharge at {c} C until 80 % of rated capacity.",
}


def _parties(block: str) -> list[dict[str, Any]]:
    """Parse a manufacturer block: identifiers (head-office and facility GLNs) and contact data."""
    out: list[dict[str, Any]] = []
    for line in block.strip("\n").split("\n"):
        if line.startswith(" "):
            prefix = out[-1]["prefix"]
            for i, p in enumerate(line.strip().split("|")):
                name, street, pc, city, country = p.split(";")
                gln = f"{prefix}{10 * (i + 1):05d}"
                out[-1]["plants"].append({"facilityId": gln + gs1_check_digit(gln), "name": name, "address": {
                    "street": street, "postalCode": pc, "city": city, "country": country}})
            continue
        name, trade, domain, prefix, phone, cats, addr = line.split("|")
        street, pc, city, country = addr.split(";")
        eo = f"{prefix}00000" + gs1_check_digit(f"{prefix}00000")  # head-office GLN
        party = {"identifier": eo, "name": name, "registeredTradeName": trade, "postalAddress": {
            "street": street, "postalCode": pc, "city": city, "country": country},
            "email": f"passport@{domain}.example", "website": f"https://www.{domain}.example", "phone": phone}
        out.append({"name": name, "trade": trade, "domain": domain, "prefix": prefix, "eo": eo, "party": party,
                    "docs": f"https://docs.{domain}.example", "categories": cats.split(), "plants": []})
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class _Model:
    """One battery model: the numbers everything else is derived from."""

    mfr: dict[str, Any]
    category: str
    chem: str
    series: int
    parallel: int
    cell_ah: float
    bms: bool
    code: str
    gtin: str
    mass: float
    cycles: int
    years: int

    @property
    def rated_ah(self) -> float:
        return _r(self.parallel * self.cell_ah, 1)

    @property
    def energy_kwh(self) -> float:
        return self.series * _CHEM[self.chem].volts[0] * self.rated_ah / 1000


@functools.cache
def _allowed(category: str, bms: bool) -> dict[str, frozenset[str]]:
    """Keys per cluster (``""``: header) that apply to the category and BMS flag, from the catalogue."""
    out: dict[str, set[str]] = {}
    for a in collect_attributes(BatteryPassport):
        if a.meta.applicability[category] is Requirement.not_applicable or (a.meta.bms_only and not bms):
            continue
        cluster, _, key = a.path.rpartition(".")
        out.setdefault(cluster, set()).add(key)
    return {k: frozenset(v) for k, v in out.items()}


def _prune(part: dict[str, Any], keys: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in part.items() if k in keys}


def _mat(rows: list[tuple[str, str, float]]) -> list[dict[str, Any]]:
    """Materials; a CAS number whose check digit fails is left out."""
    return [{"name": n, **({"casNumber": c} if c and cas_valid(c) else {}), "weightShare": _r(s)} for n, c, s in rows]


def _doc(url: str, title: str, kind: str, issued: str) -> dict[str, Any]:
    return {"url": url, "title": title, "documentType": kind, "language": "en", "issuedOn": issued}


def _template(m: _Model, rng: random.Random, status: str) -> bytes:
    """Everything shared by the items of a model, pruned to the applicable keys and serialized once."""
    ch, ct, mf, cat, code, energy = _CHEM[m.chem], _CATEGORY[m.category], m.mfr, m.category, m.code, m.energy_kwh
    docs = f"{mf['docs']}/{code}"
    p_max = int(energy * 1000 * ct.c_max // 100 * 100)
    stages = [int(rng.uniform(*ch.cf) * k * 100) for k in (0.62, 0.27, 0.03, 0.02)]
    cf_total = (sum(stages) + rng.randint(50, 400)) / 100  # stages (in cents) sum to less than the total
    circ: dict[str, Any] = {}
    for metal, (lo1, hi1, lo2, hi2) in (("Nickel", (2, 8, 1, 4)), ("Cobalt", (4, 12, 3, 9)),
                                         ("Lithium", (1, 4, 0, 2)), ("Lead", (0, 0, 0, 0))):
        present = metal[:2] in ch.hazards or metal == "Lithium"
        circ[f"preConsumerRecycled{metal}Share"] = _r(rng.uniform(lo1, hi1), 1) if present else 0
        circ[f"postConsumerRecycled{metal}Share"] = _r(rng.uniform(lo2, hi2), 1) if present else 0
    hazardous = [{"name": n, "casNumber": cas, "ecNumber": ec, "hazardClasses": hc, "concentration": _r(ch.hazards[k]),
                  "location": loc} for k, (n, cas, ec, hc, loc) in _HAZARDS.items()
                 if k in ch.hazards and cas_valid(cas) and ec_valid(ec)]
    r_cell = rng.uniform(0.6, 1.4) * {"lmt": 15, "ev": 0.6}.get(cat, 0.3) / 1000
    modules = max(1, m.series // ct.module)
    symbol = {"symbolUrl": f"{mf['docs']}/symbols/separate-collection.svg", "meaning": "Separate collection"}
    doc: dict[str, Any] = {
        "uniqueProductIdentifier": "", "granularity": "item", "dppStatus": "active",
        "economicOperatorId": mf["eo"], "facilityId": "", "contentSpecificationIds": [CONTENT_SPECIFICATION],
        "generalProductInformation": {
            "operatorInformation": {"identifier": mf["eo"], "name": mf["name"], "email": mf["party"]["email"]},
            "manufacturerInformation": mf["party"], "batteryModelIdentifier": f"{mf['trade']} {code}",
            "warrantyPeriod": ct.warranty, "batteryCategory": cat, "batteryMass": _r(m.mass, 1),
            "batteryStatus": status, "bmsPresent": m.bms},
        "labels": {
            "separateCollectionSymbol": symbol, "cadmiumLeadSymbols": [],
            "carbonFootprintLabel": {"symbolUrl": f"{mf['docs']}/symbols/cf-class.svg"},
            "extinguishingAgent": ["Water (cooling)", "Aqueous vermiculite dispersion"],
            "meaningOfLabelsAndSymbols": _TEXT["meaning"],
            "declarationOfConformity": _doc(f"{docs}/eu-doc.pdf", f"EU declaration of conformity {code}",
                                            "declarationOfConformity", "2025-01-15"),
            "testReports": [_doc(f"{docs}/tests/{t.replace(' ', '-')}.pdf", t, "testReport", "2024-11-28")
                            for t in ct.reports]},
        "carbonFootprint": {
            "carbonFootprintPerFunctionalUnit": _r(cf_total), "rawMaterialAcquisition": _r(stages[0] / 100),
            "mainProduction": _r(stages[1] / 100), "distribution": _r(stages[2] / 100),
            "endOfLifeAndRecycling": _r(stages[3] / 100), "studyUrl": f"{docs}/carbon-footprint-study.pdf",
            "performanceClass": "ABCD"[min(3, max(0, int((cf_total - 45) // 15)))],
            "declaration": {"manufacturerName": mf["name"], "batteryModel": code, "issuedOn": "2025-01",
                            "manufacturingPlace": mf["plants"][0]["name"], "declarationId": f"CFD-{code}"},
            "absoluteCarbonFootprint": _r(cf_total * energy, 1)},
        "supplyChainDueDiligence": {
            "dueDiligenceReport": _doc(f"{mf['docs']}/due-diligence-2025.pdf", "Due diligence report 2025",
                                       "dueDiligenceReport", "2026-03-31"),
            "thirdPartyAssurances": [{"schemeName": "RMI Responsible Minerals Assurance", "validUntil": "2027-06"}],
            "supplyChainIndices": [{"name": "Audited smelter share (%)", "value": _r(rng.uniform(88, 100), 1)}]},
        "materialComposition": {
            "batteryChemistry": {"shortName": m.chem, "clearName": ch.clear},
            "criticalRawMaterials": _mat(_CRM_COMMON + ch.crm),
            "electrodeAndElectrolyteMaterials": {
                "cathode": _mat([ch.cathode, *_CATHODE_REST]), "anode": _mat(_ANODE),
                "electrolyte": _mat(_ELECTROLYTE), "separator": _mat(_SEPARATOR)},
            "hazardousSubstances": hazardous, "impactOfSubstances": _TEXT["impact"]},
        "circularity": {
            "dismantlingInformation": {
                "documents": [_doc(f"{docs}/dismantling.pdf", "Exploded diagram and disassembly sequence",
                                   "dismantlingManual", "2025-02-01")],
                "numberOfCells": m.series * m.parallel,
                "cellLayout": f"{m.series}S{m.parallel}P, {modules} module(s), {m.cell_ah} Ah cells",
                "fasteningTechniques": ["Bolts M6/M8", "Laser-welded busbars", "Adhesive"],
                "toolsRequired": ["Insulated tool set (1000 V)", "Lifting device"], "warnings": _TEXT["warnings"]},
            "sparePartNumbers": [{"partName": p, "partNumber": f"{code}-{i + 1:02d}"} for i, p in enumerate(ct.spares)],
            "sparePartSources": [{"name": f"{mf['trade']} Service", "email": f"spares@{mf['domain']}.example",
                                  "website": f"https://service.{mf['domain']}.example"}],
            "safetyMeasures": {"instructions": _TEXT["safety"]}, **circ,
            "renewableContentShare": _r(rng.uniform(0, 3), 1), "endUserWastePrevention": _TEXT["prevention"],
            "endUserSeparateCollection": _TEXT["collection"].format(name=mf["name"]),
            "collectionAndTreatment": _TEXT["treatment"].format(domain=mf["domain"])},
        "performanceAndDurability": {
            "ratedCapacity": m.rated_ah, "certifiedUsableEnergy": _r(energy * 0.94, 1),
            "minimumVoltage": _r(ch.volts[1] * m.series, 1), "nominalVoltage": _r(ch.volts[0] * m.series, 1),
            "maximumVoltage": _r(ch.volts[2] * m.series, 1),
            "originalPowerCapability": [{"stateOfCharge": 80, "power": int(p_max * 0.92), "temperature": 25},
                                        {"stateOfCharge": 20, "power": int(p_max * 0.71), "temperature": 25}],
            "maximumPermittedPower": p_max, "powerToEnergyRatio": _r(p_max / (energy * 1000)),
            "initialRoundTripEfficiency": ch.rte, "roundTripEfficiencyAt50PercentCycleLife": _r(ch.rte - 3.1, 1),
            "initialSelfDischargeRate": _r(rng.uniform(1.5, 3.0)),
            "initialInternalResistance": {"cell": _r(r_cell, 5), "module": _r(r_cell * ct.module / m.parallel, 4),
                                          "pack": _r(r_cell * m.series / m.parallel * 1.15 + 0.002, 4)},
            "expectedLifetimeYears": m.years, "expectedLifetimeCycles": m.cycles,
            "cycleLifeReferenceTest": _TEXT["cycle"].format(std=ct.standard, c=ct.c_test),
            "cycleLifeTestCRate": ct.c_test, "capacityThresholdForExhaustion": rng.choice((70, 75, 80)),
            "idleTemperatureLowerBoundary": ct.idle[0], "idleTemperatureUpperBoundary": ct.idle[1]},
    }
    for cluster, keys in _allowed(cat, m.bms).items():
        if cluster:
            doc[cluster] = _prune(doc[cluster], keys)
    return orjson.dumps(doc)


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _item(m: _Model, template: bytes, rng: random.Random, *, serial: str, batch: str, plant: dict[str, Any],
          made: str, service: str, t0: datetime, fade0: float, cycles: int, upi_domain: str) -> dict[str, Any]:
    """One passport: a fresh copy of the model template plus per-item identifiers and BMS readings."""
    doc, allowed = orjson.loads(template), _allowed(m.category, m.bms)
    doc["uniqueProductIdentifier"] = f"https://{upi_domain}/01/{m.gtin}/21/{serial}"
    doc["facilityId"] = plant["facilityId"]
    gpi = {"batchNumber": batch, "serialNumber": serial, "manufacturingDate": made,
           "puttingIntoServiceDate": service, "manufacturingPlace": {
               "facilityId": plant["facilityId"], "name": plant["name"], "address": dict(plant["address"])}}
    doc["generalProductInformation"].update(_prune(gpi, allowed["generalProductInformation"]))
    pd = doc["performanceAndDurability"]
    t = t0 + timedelta(minutes=rng.randrange(_SPAN_MIN))
    ts, history = _ts(t), [_ts(t - timedelta(days=d)) for d in (14, 7, 0)]
    fade = fade0 + 20 * cycles / m.cycles + rng.uniform(0, 0.2)  # capacity fade now, %
    p_fade, e_fade, temp = rng.uniform(0, 0.6), rng.uniform(0, 0.3), rng.uniform(12, 28)
    sd, energy = pd.get("initialSelfDischargeRate", 2), m.energy_kwh

    def dyn(v: float) -> dict[str, Any]:
        return {"value": v, "timestamp": ts}

    item: dict[str, Any] = {
        "capacityFade": _r(fade0), "powerFade": _r(p_fade), "roundTripEfficiencyFade": _r(e_fade),
        "internalResistanceIncrease": _r(rng.uniform(0, 1.5)),
        "stateOfCharge": dyn(_r(rng.uniform(30, 55) if m.category == "ev" else rng.uniform(20, 95), 1)),
        "fullCycles": dyn(cycles), "lastDynamicUpdate": ts,
    }
    if m.bms:  # Annex VII values held by the battery management system
        item |= {
            "remainingCapacity": dyn(_r(m.rated_ah * (1 - fade / 100), 1)),
            "stateOfCertifiedEnergy": dyn(_r(100 - fade, 1)),
            "remainingUsableEnergy": dyn(_r(pd.get("certifiedUsableEnergy", 0) * (1 - fade / 100), 1)),
            "remainingPowerCapability": dyn(int(pd["maximumPermittedPower"] * (1 - (p_fade + fade / 4) / 100))),
            "remainingRoundTripEfficiency": dyn(_r(pd["initialRoundTripEfficiency"] - e_fade - fade / 20, 1)),
            "currentSelfDischargeRate": dyn(_r(sd + rng.uniform(0, 0.3))),
            "selfDischargeRateEvolution": [{"value": _r(sd + k * 0.05), "timestamp": h} for k, h in enumerate(history)],
            "energyThroughput": dyn(_r(cycles * energy * 2 * rng.uniform(1.0, 1.1), 1)),
            "capacityThroughput": dyn(_r(cycles * m.rated_ah * 2 * rng.uniform(1.0, 1.1), 1)),
            "temperatureInformation": [{"timestamp": h, "minimum": _r(temp - 6 - k, 1),
                                        "maximum": _r(temp + 9 + k, 1), "average": _r(temp + k, 1)}
                                       for k, h in enumerate(history)],
            "timeExtremeTemperatureAbove": dyn(rng.randrange(9)), "timeExtremeTemperatureBelow": dyn(rng.randrange(20)),
            "timeChargingExtremeTemperatureAbove": dyn(rng.randrange(3)),
            "timeChargingExtremeTemperatureBelow": dyn(rng.randrange(2)),
            "deepDischargeEvents": dyn(rng.randrange(3) if rng.random() < 0.05 else 0),
            "overchargeEvents": dyn(1 if rng.random() < 0.01 else 0),
        }
        if rng.random() < 0.02:
            item["negativeEvents"] = [{"date": history[1][:10], "eventType": "thermalWarning", "description":
                                       "Cell over-temperature warning during fast charging; power limited by "
                                       "the BMS, no damage found at inspection."}]
    pd.update(_prune(item, allowed["performanceAndDurability"]))
    return doc


@functools.cache
def _models(seed: int) -> dict[str, list[tuple[_Model, bytes]]]:
    """Battery models per category with their serialized templates (deterministic in ``seed``)."""
    rng = random.Random(f"{seed}/models")
    out: dict[str, list[tuple[_Model, bytes]]] = {c: [] for c, _ in CATEGORY_WEIGHTS}
    for mf in _parties(_MANUFACTURERS):
        for k, cat in enumerate(mf["categories"]):
            ct = _CATEGORY[cat]
            for j in range(rng.randint(1, 3)):
                chem, series, par = rng.choice(ct.chems), rng.choice(ct.series), rng.randint(*ct.parallel)
                gtin = f"0{mf['prefix']}{10000 + 100 * k + j:05d}"
                m = _Model(mf, cat, chem, series, par, _r(rng.uniform(*ct.cell_ah), 1),
                           bms=cat != "industrial" or rng.random() < 0.6,
                           code=f"{cat[:3].upper()}-{series}S{par}P-{chem}-{j + 1}",
                           gtin=gtin + gs1_check_digit(gtin), mass=0.0, years=rng.randint(*ct.years),
                           cycles=rng.randrange(_CHEM[chem].cycles[0], _CHEM[chem].cycles[1], 100))
                m = dataclasses.replace(m, mass=m.energy_kwh * 1000 / _CHEM[chem].wh_kg * rng.uniform(0.95, 1.05))
                out[cat].append((m, _template(m, rng, "original")))
    return out


def _picks(count: int, seed: int) -> Iterator[tuple[str, int]]:
    """Category and model index of each fleet document, from their own random stream (cheap to replay)."""
    rng, models = random.Random(f"{seed}/categories"), _models(seed)
    names, weights = [c for c, _ in CATEGORY_WEIGHTS], [w for _, w in CATEGORY_WEIGHTS]
    for _ in range(count):
        cat = rng.choices(names, weights)[0]
        yield cat, rng.randrange(len(models[cat]))


def generate_fleet(count: int, *, seed: int = 2027, upi_domain: str = "id.dbp.example") -> Iterator[dict[str, Any]]:
    """Yield ``count`` valid, independent passports (batteryStatus 'original'), deterministic in ``seed``.

    Items come in batches of 50-500 per model, each batch made in one plant in one month (2025-01..2026-08).
    """
    models, rng = _models(seed), random.Random(f"{seed}/items")
    batches: dict[str, list[Any]] = {}  # model code -> [batch number, remaining, plant, month, serials issued]
    n_batches = 0
    for cat, k in _picks(count, seed):
        m, template = models[cat][k]
        state = batches.get(m.code)
        if state is None or state[1] == 0:
            n_batches += 1
            month = rng.randrange(len(_MONTHS))
            state = batches[m.code] = [f"B{_MONTHS[month][:4]}-{n_batches:04d}", rng.randint(50, 500),
                                       rng.choice(m.mfr["plants"]), month, state[4] if state else 0]
        state[1] -= 1
        state[4] += 1
        in_service = _MONTHS[min(state[3] + rng.randint(1, 3), len(_MONTHS) - 1)]
        yield _item(m, template, rng, serial=f"{m.mfr['trade'][:2]}{m.gtin[8:13]}{state[4]:07d}",
                    batch=state[0], plant=state[2], made=_MONTHS[state[3]],
                    service=f"{in_service}-{rng.randint(1, 28):02d}", t0=_TS_FLEET, fade0=rng.uniform(0, 0.5),
                    cycles=rng.randint(1, 40) if cat == "ev" else rng.randint(5, 400), upi_domain=upi_domain)


def successor_plan(count: int, *, seed: int = 2027) -> list[tuple[list[int], str]]:
    """Second-life events over the first ``count`` fleet documents (same ``seed``).

    About 2 % of ``count`` events (at least one from 20 documents on), each with 1-3 EV predecessors
    of one model (indexes, ascending); no document is a predecessor twice; the first event is a repurposing.
    """
    buckets: dict[int, list[int]] = {}  # EV model -> document indexes
    for i, (cat, k) in enumerate(_picks(count, seed)):
        if cat == "ev":
            buckets.setdefault(k, []).append(i)
    rng = random.Random(f"{seed}/successors")
    for k in sorted(buckets):
        rng.shuffle(buckets[k])
    wanted = max(1 if count >= 20 else 0, round(count * 0.02))
    plan: list[tuple[list[int], str]] = []
    while len(plan) < wanted and buckets:
        k = rng.choice(sorted(buckets))
        bucket = buckets[k]
        group = sorted(bucket.pop() for _ in range(min(len(bucket), rng.choice((1, 1, 2, 2, 3)))))
        if not bucket:
            del buckets[k]
        plan.append((group, "repurposing" if not plan else rng.choices(list(OPERATIONS), (0.6, 0.25, 0.15))[0]))
    return plan


def _strings(doc: dict[str, Any]) -> tuple[int, int]:
    """Cells in series and in parallel of a fleet document's pack."""
    pd = doc["performanceAndDurability"]
    series = round(pd["nominalVoltage"] / _CHEM[doc["materialComposition"]["batteryChemistry"]["shortName"]].volts[0])
    return series, doc["circularity"]["dismantlingInformation"]["numberOfCells"] // series


def successor_document(predecessors: list[dict[str, Any]], operation: str, *, index: int,
                       upi_domain: str = "id.dbp.example") -> dict[str, Any]:
    """The passport of the battery made from ``predecessors`` by ``operation`` (a key of ``OPERATIONS``).

    Repurposing joins the packs in parallel into a ``stationary`` battery with a BMS; remanufacturing and
    preparation for re-use keep the first predecessor's category and configuration (the others are module
    donors). Operator and manufacturer of the new product: Second Life Storage GmbH. ``capacityFade``
    records the first-life fade at the status change. Deterministic in ``index`` and ``operation``.
    """
    status, first = OPERATIONS[operation], predecessors[0]
    gpi0, pd0 = first["generalProductInformation"], first["performanceAndDurability"]
    chem = first["materialComposition"]["batteryChemistry"]["shortName"]
    joined = operation == "repurposing"
    donors = predecessors if joined else predecessors[:1]
    strings = [_strings(p) for p in donors]  # (series, parallel) of each pack
    series, parallel = strings[0][0], sum(p for _, p in strings)
    category = "stationary" if joined else gpi0["batteryCategory"]
    rng = random.Random(f"successor/{index}/{operation}")
    mf = _parties(_SECOND_LIFE)[0]
    gtin = f"0{mf['prefix']}{20000 + index % 80000:05d}"
    m = _Model(mf, category, chem, series, parallel, _r(pd0["ratedCapacity"] / strings[0][1], 1),
               bms=True if joined else gpi0.get("bmsPresent", True),
               code=f"{category[:3].upper()}-{series}S{parallel}P-{chem}-{status.upper()}",
               gtin=gtin + gs1_check_digit(gtin),
               mass=sum(p["generalProductInformation"]["batteryMass"] for p in donors) * (1.12 if joined else 1),
               cycles=int(pd0["expectedLifetimeCycles"] * 0.6), years=10)
    fade0 = rng.uniform(2, 6) if operation == "remanufacturing" else rng.uniform(14, 28)
    return _item(m, _template(m, rng, status), rng, serial=f"SL{index:08d}", batch=f"SL2026-{index + 1:04d}",
                 plant=mf["plants"][0], made="2026-10", service=f"2026-10-{rng.randint(16, 20)}",
                 t0=_TS_SECOND, fade0=fade0, cycles=rng.randint(0, 5), upi_domain=upi_domain)
