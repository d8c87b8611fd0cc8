"""The seven content clusters of DIN DKE SPEC 99100 / Battery Pass v1.2 (Annex XIII, IV, VI, VII).

Every field is an ``attr`` carrying its longlist row (LL#), DIN clause, Annex XIII point, access
group, level, static/dynamic kind, unit, per-category applicability (EV, LMT, industrial,
stationary as x mandatory / o voluntary / - not applicable) and BMS condition.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from dbp.passports.attributes import AccessGroup as A
from dbp.passports.attributes import Category, Kind, Level, attr
from dbp.passports.types import (
    Address,
    CasNumber,
    Count,
    DateOrMonth,
    DocumentRef,
    DynamicCount,
    DynamicNonNegative,
    DynamicNumber,
    DynamicPercent,
    Identifier,
    LongText,
    Name,
    NonNegative,
    Number,
    Party,
    Percent,
    ShortText,
    Strict,
    Temperature,
    Timestamp,
    Url,
    Voltage,
)

LI = A.legitimate_interest
LIA = A.legitimate_interest_and_authorities
IND = Level.individual
DYN = Kind.dynamic


class BatteryStatus(StrEnum):
    """Annex XIII 4(c): exactly these five values."""

    original = "original"
    repurposed = "repurposed"
    re_used = "re-used"
    remanufactured = "remanufactured"
    waste = "waste"


# ---------------------------------------------------------------- 1. identifiers & product data
class ManufacturingPlace(Strict):
    facilityId: Identifier | None = None
    name: Name | None = None
    address: Address | None = None


class RepairEvent(Strict):
    date: DateOrMonth
    description: LongText
    repairer: Name | None = None


class GeneralProductInformation(Strict):
    operatorInformation: Party | None = attr(
        ll=3, din="6.1.2.3", clause="ESPR Annex III(h); ESPR Art. 12", level=IND, appl="oooo",
        description="Economic operator placing the battery on the market: identifier and contact data")
    manufacturerInformation: Party | None = attr(
        ll=4, din="6.1.2.4", annex="1(a)", clause="Annex XIII 1(a); Annex VI Part A(1); Art. 38(7)",
        description="Manufacturer identifier, name, registered trade name, postal address, web and e-mail")
    batteryModelIdentifier: ShortText | None = attr(
        din="6.1.2.2", annex="1(a)", clause="Annex XIII 1(a); Annex VI Part A(2); Art. 38(6)",
        description="Model identification of the battery")
    batchNumber: ShortText | None = attr(
        annex="1(a)", level=IND, appl="oooo", clause="Annex VI Part A(2); Art. 38(6)",
        description="Batch number of the battery")
    serialNumber: ShortText | None = attr(
        annex="1(a)", level=IND, appl="oooo", clause="Annex VI Part A(2); Art. 38(6); DIN DKE SPEC 99100 fn 4",
        description="Serial number of the individual battery")
    manufacturingPlace: ManufacturingPlace | None = attr(
        ll=5, din="6.1.3.1", annex="1(a)", clause="Annex XIII 1(a); Annex VI Part A(3)",
        description="Place of manufacture: facility identifier and address")
    manufacturingDate: DateOrMonth | None = attr(
        ll=6, din="6.1.3.2", annex="1(a)", level=IND,
        clause="Annex XIII 1(a); Annex VI Part A(4); Annex VII Part B(1)",
        description="Date of manufacture (ISO 8601 year-month, or full date)")
    puttingIntoServiceDate: DateOrMonth | None = attr(
        ll=7, din="6.1.3.3", access=LI, level=IND, appl="-x-x", clause="Annex VII Part B(1)",
        description="Date of putting the battery into service")
    warrantyPeriod: Annotated[int, Field(ge=0, le=1200)] | None = attr(
        ll=8, din="6.1.3.4", annex="1(m)", unit="month", clause="Annex XIII 1(m)",
        description="Period for which the commercial warranty for the calendar life applies")
    batteryCategory: Category | None = attr(
        ll=9, din="6.1.3.5", annex="1(a)", clause="Annex XIII 1(a); Annex VI Part A(2); Art. 77(1)",
        description="Battery category (ev, lmt, industrial > 2 kWh, stationary BESS)")
    batteryMass: NonNegative | None = attr(
        ll=10, din="6.1.3.6", annex="1(a)", unit="kg", clause="Annex XIII 1(a); Annex VI Part A(5)",
        description="Mass of the battery")
    batteryStatus: BatteryStatus | None = attr(
        ll=11, din="6.1.3.7", annex="4(c)", access=LI, level=IND, kind=DYN, clause="Annex XIII 4(c); Art. 77(7)",
        description="Battery status (original, repurposed, re-used, remanufactured or waste)")
    bmsPresent: bool | None = attr(
        clause="Art. 14(1); Annex VII", appl="oooo",
        description="Whether the battery has a battery management system holding Annex VII data")
    repairHistory: list[RepairEvent] | None = attr(
        din="6.1.3.7", access=LI, level=IND, kind=DYN, appl="oooo", clause="DIN DKE SPEC 99100 6.1.3.7",
        description="Repairs of a non-waste battery (status stays re-used/original; no new passport)",
        max_length=1000)


# ---------------------------------------------------------------- 2. symbols, labels, conformity
class Symbol(Strict):
    symbolUrl: Url | None = None
    meaning: LongText | None = None


class HeavyMetal(StrEnum):
    cadmium = "Cd"
    lead = "Pb"


class HeavyMetalSymbol(Strict):
    element: HeavyMetal
    symbolUrl: Url | None = None


class Labels(Strict):
    separateCollectionSymbol: Symbol | None = attr(
        ll=12, din="6.2.2", annex="1(q)", clause="Annex XIII 1(q); Art. 13(4); Annex VI Part B",
        description="Separate collection symbol (crossed-out wheeled bin)")
    cadmiumLeadSymbols: list[HeavyMetalSymbol] | None = attr(
        ll=13, din="6.2.3", annex="1(q)", clause="Annex XIII 1(q); Art. 13(5)",
        description="Chemical symbols Cd / Pb where the thresholds of Art. 13(5) are exceeded", max_length=2)
    carbonFootprintLabel: Symbol | None = attr(
        ll=14, din="6.2.4", annex="1(c)", appl="oooo", clause="Art. 7(2) via Annex XIII 1(c)",
        description="Carbon footprint label")
    extinguishingAgent: list[ShortText] | None = attr(
        ll=15, din="6.2.5", annex="1(a)", level=IND, clause="Annex VI Part A(9)",
        description="Usable extinguishing agent(s)", max_length=20)
    meaningOfLabelsAndSymbols: LongText | None = attr(
        ll=16, din="6.2.6", annex="1(s)", clause="Annex XIII 1(s); Art. 74(1)(e)",
        description="Meaning of labels and symbols on the battery")
    declarationOfConformity: DocumentRef | None = attr(
        ll=17, din="6.2.7", annex="1(r)", clause="Annex XIII 1(r); Art. 18; Annex IX",
        description="EU declaration of conformity")
    testReports: list[DocumentRef] | None = attr(
        ll=18, din="6.2.8", annex="3", access=A.authorities, clause="Annex XIII 3; Annex VIII Part A 2(h)",
        description="Results of test reports proving compliance", max_length=500)


# ---------------------------------------------------------------- 3. carbon footprint
class CarbonFootprintDeclaration(Strict):
    manufacturerName: Name | None = None
    batteryModel: ShortText | None = None
    manufacturingPlace: Name | None = None
    declarationId: Identifier | None = None
    issuedOn: DateOrMonth | None = None


CF_UNIT = "kgCO2e/kWh"


class CarbonFootprint(Strict):
    carbonFootprintPerFunctionalUnit: NonNegative | None = attr(
        ll=19, din="6.3.2", annex="1(c)", unit=CF_UNIT, clause="Annex XIII 1(c); Art. 7(1)",
        description="Battery carbon footprint per functional unit (kWh of total energy over service life)")
    rawMaterialAcquisition: NonNegative | None = attr(
        ll=20, din="6.3.3", annex="1(c)", unit=CF_UNIT, clause="Annex XIII 1(c); Art. 7(1)",
        description="Contribution of raw material acquisition and pre-processing")
    mainProduction: NonNegative | None = attr(
        ll=21, din="6.3.4", annex="1(c)", unit=CF_UNIT, clause="Annex XIII 1(c); Art. 7(1)",
        description="Contribution of main product production")
    distribution: NonNegative | None = attr(
        ll=22, din="6.3.5", annex="1(c)", unit=CF_UNIT, clause="Annex XIII 1(c); Art. 7(1)",
        description="Contribution of distribution")
    endOfLifeAndRecycling: NonNegative | None = attr(
        ll=23, din="6.3.6", annex="1(c)", unit=CF_UNIT, clause="Annex XIII 1(c); Art. 7(1)",
        description="Contribution of end of life and recycling")
    performanceClass: Annotated[str, Field(pattern=r"^[A-Z][A-Za-z0-9+-]{0,7}$")] | None = attr(
        ll=24, din="6.3.7", annex="1(c)", clause="Annex XIII 1(c); Art. 7(2)",
        description="Carbon footprint performance class")
    studyUrl: Url | None = attr(
        ll=25, din="6.3.8", annex="1(c)", clause="Annex XIII 1(c); Art. 7(1)(g)",
        description="Web link to the public carbon footprint study")
    declaration: CarbonFootprintDeclaration | None = attr(
        ll=26, din="6.3.9", annex="1(c)", clause="Annex XIII 1(c); Art. 7(1)(a)-(c)",
        description="General battery and manufacturer information of the carbon footprint declaration")
    absoluteCarbonFootprint: NonNegative | None = attr(
        ll=27, din="6.3.10", appl="oooo", unit="kgCO2e", clause="voluntary (Battery Pass LL#27)",
        description="Absolute battery carbon footprint")


# ---------------------------------------------------------------- 4. supply-chain due diligence
class Assurance(Strict):
    schemeName: Name
    url: Url | None = None
    validUntil: DateOrMonth | None = None


class SupplyChainIndex(Strict):
    name: Name
    value: Number
    url: Url | None = None


class SupplyChainDueDiligence(Strict):
    dueDiligenceReport: DocumentRef | None = attr(
        ll=28, din="6.4.2", annex="1(d)", clause="Annex XIII 1(d); Art. 52(3)",
        description="Information of the supply-chain due-diligence report")
    thirdPartyAssurances: list[Assurance] | None = attr(
        ll=29, din="6.4.3", appl="oooo", clause="Art. 49(d)",
        description="Third-party assurances of recognised due-diligence schemes", max_length=100)
    supplyChainIndices: list[SupplyChainIndex] | None = attr(
        ll=30, din="6.4.4", appl="oooo", clause="voluntary (Battery Pass LL#30)",
        description="Supply-chain indices", max_length=100)


# ---------------------------------------------------------------- 5. materials and composition
class Chemistry(Strict):
    shortName: ShortText
    clearName: Name | None = None


class Material(Strict):
    name: Name
    casNumber: CasNumber | None = None
    weightShare: Percent | None = None  # % w/w of the battery (or of the component, see context)


class ElectrodeMaterials(Strict):
    cathode: list[Material] | None = Field(default=None, max_length=200)
    anode: list[Material] | None = Field(default=None, max_length=200)
    electrolyte: list[Material] | None = Field(default=None, max_length=200)
    separator: list[Material] | None = Field(default=None, max_length=200)


class HazardousSubstance(Strict):
    name: Name
    casNumber: CasNumber | None = None
    ecNumber: Annotated[str, Field(pattern=r"^[0-9]{3}-[0-9]{3}-[0-9]$")] | None = None
    hazardClasses: list[ShortText] | None = Field(default=None, max_length=50)
    concentration: Percent | None = None  # % w/w of the battery
    location: ShortText | None = None


class MaterialComposition(Strict):
    batteryChemistry: Chemistry | None = attr(
        ll=31, din="6.5.2", annex="1(b)", clause="Annex XIII 1(b); Annex VI Part A(7)",
        description="Battery chemistry")
    criticalRawMaterials: list[Material] | None = attr(
        ll=32, din="6.5.3", annex="1(b)", clause="Annex XIII 1(b); Annex VI Part A(10)",
        description="Critical raw materials present above 0.1 % w/w", max_length=100)
    electrodeAndElectrolyteMaterials: ElectrodeMaterials | None = attr(
        ll=33, din="6.5.4", annex="2(a)", access=LIA, clause="Annex XIII 2(a)",
        description="Detailed composition: materials used in cathode, anode and electrolyte (shares % w/w)")
    hazardousSubstances: list[HazardousSubstance] | None = attr(
        ll=34, din="6.5.5", annex="1(b)", clause="Annex XIII 1(b); Annex VI Part A(8)",
        description="Hazardous substances other than mercury, cadmium and lead", max_length=200)
    impactOfSubstances: LongText | None = attr(
        ll=35, din="6.5.6", annex="1(s)", clause="Annex XIII 1(s); Art. 74(1)(f)",
        description="Impact of substances on the environment, human health, safety and persons")


# ---------------------------------------------------------------- 6. circularity
class DismantlingInformation(Strict):
    documents: list[DocumentRef] | None = Field(default=None, max_length=200)
    numberOfCells: Annotated[int, Field(ge=1, le=10**7)] | None = None
    cellLayout: LongText | None = None
    fasteningTechniques: list[ShortText] | None = Field(default=None, max_length=100)
    toolsRequired: list[ShortText] | None = Field(default=None, max_length=100)
    warnings: LongText | None = None


class SparePart(Strict):
    partName: Name
    partNumber: Identifier


class SafetyMeasures(Strict):
    instructions: LongText | None = None
    documents: list[DocumentRef] | None = Field(default=None, max_length=100)


PCT = "%"


class Circularity(Strict):
    dismantlingInformation: DismantlingInformation | None = attr(
        ll=36, din="6.6.1.2", annex="2(c)", access=LIA, clause="Annex XIII 2(c)",
        description="Exploded diagrams, disassembly sequences, fastenings, tools, warnings, cells and layout")
    sparePartNumbers: list[SparePart] | None = attr(
        ll=37, din="6.6.1.3", annex="2(b)", access=LIA, clause="Annex XIII 2(b)",
        description="Part numbers for components", max_length=2000)
    sparePartSources: list[Party] | None = attr(
        ll=38, din="6.6.1.4", annex="2(b)", access=LIA, clause="Annex XIII 2(b)",
        description="Contact details of sources for replacement spares", max_length=200)
    safetyMeasures: SafetyMeasures | None = attr(
        ll=39, din="6.6.1.5", annex="2(d)", access=LIA, clause="Annex XIII 2(d); Art. 74(2)",
        description="Safety measures")
    preConsumerRecycledNickelShare: Percent | None = attr(
        ll=40, din="6.6.2.3", annex="1(e)", unit=PCT, clause="Annex XIII 1(e); Art. 8(1)",
        description="Pre-consumer recycled nickel share")
    preConsumerRecycledCobaltShare: Percent | None = attr(
        ll=41, din="6.6.2.4", annex="1(e)", unit=PCT, clause="Annex XIII 1(e); Art. 8(1)",
        description="Pre-consumer recycled cobalt share")
    preConsumerRecycledLithiumShare: Percent | None = attr(
        ll=42, din="6.6.2.5", annex="1(e)", unit=PCT, clause="Annex XIII 1(e); Art. 8(1)",
        description="Pre-consumer recycled lithium share")
    preConsumerRecycledLeadShare: Percent | None = attr(
        ll=43, din="6.6.2.6", annex="1(e)", unit=PCT, clause="Annex XIII 1(e); Art. 8(1)",
        description="Pre-consumer recycled lead share")
    postConsumerRecycledNickelShare: Percent | None = attr(
        ll=44, din="6.6.2.7", annex="1(e)", unit=PCT, clause="Annex XIII 1(e); Art. 8(1)",
        description="Post-consumer recycled nickel share")
    postConsumerRecycledCobaltShare: Percent | None = attr(
        ll=45, din="6.6.2.8", annex="1(e)", unit=PCT, clause="Annex XIII 1(e); Art. 8(1)",
        description="Post-consumer recycled cobalt share")
    postConsumerRecycledLithiumShare: Percent | None = attr(
        ll=46, din="6.6.2.9", annex="1(e)", unit=PCT, clause="Annex XIII 1(e); Art. 8(1)",
        description="Post-consumer recycled lithium share")
    postConsumerRecycledLeadShare: Percent | None = attr(
        ll=47, din="6.6.2.10", annex="1(e)", unit=PCT, clause="Annex XIII 1(e); Art. 8(1)",
        description="Post-consumer recycled lead share")
    renewableContentShare: Percent | None = attr(
        ll=48, din="6.6.2.11", annex="1(f)", unit=PCT, clause="Annex XIII 1(f)",
        description="Share of renewable content")
    endUserWastePrevention: LongText | None = attr(
        ll=49, din="6.6.3.2", annex="1(s)", clause="Annex XIII 1(s); Art. 74(1)(a)",
        description="Role of end-users in contributing to waste prevention")
    endUserSeparateCollection: LongText | None = attr(
        ll=50, din="6.6.3.3", annex="1(s)", clause="Annex XIII 1(s); Art. 74(1)(b)",
        description="Role of end-users in contributing to the separate collection of waste batteries")
    collectionAndTreatment: LongText | None = attr(
        ll=51, din="6.6.3.4", annex="1(s)", clause="Annex XIII 1(s); Art. 74(1)(c)",
        description="Separate collection, take-back, preparation for re-use/repurposing and recycling options")


# ---------------------------------------------------------------- 7. performance and durability
class PowerAtSoc(Strict):
    stateOfCharge: Percent  # Annex IV Part B(4): measured at 80 % and 20 % SoC
    power: NonNegative  # W
    temperature: Temperature | None = None


class InternalResistance(Strict):
    cell: NonNegative | None = None  # Ω
    module: NonNegative | None = None
    pack: NonNegative | None = None


class TemperatureRecord(Strict):
    timestamp: Timestamp
    minimum: Temperature | None = None
    maximum: Temperature | None = None
    average: Temperature | None = None


class NegativeEvent(Strict):
    date: DateOrMonth
    description: LongText
    eventType: ShortText | None = None


PD = "6.7"
OHM = "Ohm"
DEGC = "degC"


class PerformanceAndDurability(Strict):
    ratedCapacity: NonNegative | None = attr(
        ll=52, din="6.7.2.2", annex="1(g)", unit="Ah", clause="Annex XIII 1(g); Annex IV Part A(1)",
        description="Rated capacity")
    remainingCapacity: DynamicNonNegative | None = attr(
        ll=53, din="6.7.2.3", access=LI, level=IND, kind=DYN, appl="oxox", unit="Ah", bms_only=True,
        annex="4(b)", clause="Annex XIII 4(b); Annex VII Part A(1)", description="Remaining capacity")
    capacityFade: Percent | None = attr(
        ll=54, din="6.7.2.4", access=LI, level=IND, unit=PCT, annex="4(a)",
        clause="Annex XIII 4(a); Annex IV Part A(1)",
        description="Capacity fade (at placing on the market and on status change)")
    certifiedUsableEnergy: NonNegative | None = attr(
        ll=55, din="6.7.2.5", appl="o---", unit="kWh", clause="voluntary (Battery Pass LL#55)",
        description="Certified usable battery energy")
    remainingUsableEnergy: DynamicNonNegative | None = attr(
        ll=56, din="6.7.2.6", access=LI, level=IND, kind=DYN, appl="o---", unit="kWh",
        clause="voluntary (Battery Pass LL#56)", description="Remaining usable battery energy")
    stateOfCertifiedEnergy: DynamicPercent | None = attr(
        ll=57, din="6.7.2.7", access=LI, level=IND, kind=DYN, appl="x---", unit=PCT, bms_only=True,
        annex="4(b)", clause="Annex XIII 4(b); Annex VII (EV)", description="State of certified energy (SOCE)")
    stateOfCharge: DynamicPercent | None = attr(
        ll=58, din="6.7.2.8", access=LI, level=IND, kind=DYN, unit=PCT, annex="4(d)",
        clause="Annex XIII 4(d); Art. 3(1)(27)", description="State of charge")
    minimumVoltage: Voltage | None = attr(
        ll=59, din="6.7.2.9", annex="1(h)", unit="V", clause="Annex XIII 1(h)", description="Minimal voltage")
    maximumVoltage: Voltage | None = attr(
        ll=60, din="6.7.2.10", annex="1(h)", unit="V", clause="Annex XIII 1(h)", description="Maximum voltage")
    nominalVoltage: Voltage | None = attr(
        ll=61, din="6.7.2.11", annex="1(h)", unit="V", clause="Annex XIII 1(h)", description="Nominal voltage")
    originalPowerCapability: list[PowerAtSoc] | None = attr(
        ll=62, din="6.7.3.2", annex="1(i)", unit="W", clause="Annex XIII 1(i); Annex IV Part B(4)",
        description="Original power capability at 80 % and 20 % state of charge", max_length=20)
    remainingPowerCapability: DynamicNonNegative | None = attr(
        ll=63, din="6.7.3.3", access=LI, level=IND, kind=DYN, appl="oxox", unit="W", bms_only=True,
        annex="4(b)", clause="Annex XIII 4(b); Annex VII Part A(2)", description="Remaining power capability")
    powerFade: Percent | None = attr(
        ll=64, din="6.7.3.4", access=LI, level=IND, unit=PCT, annex="4(a)",
        clause="Annex XIII 4(a); Annex IV Part A(2)", description="Power fade")
    maximumPermittedPower: NonNegative | None = attr(
        ll=65, din="6.7.3.5", annex="1(i)", unit="W", clause="Annex XIII 1(i)",
        description="Maximum permitted battery power (power limits)")
    powerToEnergyRatio: NonNegative | None = attr(
        ll=66, din="6.7.3.6", appl="oooo", unit="1/h", clause="Annex IV Part B(2)",
        description="Ratio between nominal battery power (W) and battery energy (Wh)")
    initialRoundTripEfficiency: Percent | None = attr(
        ll=67, din="6.7.4.2", annex="1(n)", unit=PCT, clause="Annex XIII 1(n); Annex IV Part A(4)",
        description="Initial round-trip energy efficiency")
    roundTripEfficiencyAt50PercentCycleLife: Percent | None = attr(
        ll=68, din="6.7.4.3", annex="1(n)", unit=PCT, clause="Annex XIII 1(n)",
        description="Round-trip energy efficiency at 50 % of cycle life")
    remainingRoundTripEfficiency: DynamicPercent | None = attr(
        ll=69, din="6.7.4.4", access=LI, level=IND, kind=DYN, appl="-x-x", unit=PCT, bms_only=True,
        annex="4(b)", clause="Annex XIII 4(b); Annex VII Part A(3)",
        description="Remaining round-trip energy efficiency")
    roundTripEfficiencyFade: Percent | None = attr(
        ll=70, din="6.7.4.5", access=LI, level=IND, unit=PCT, annex="4(a)",
        clause="Annex XIII 4(a); Annex IV Part A(4)", description="Energy round-trip efficiency fade")
    initialSelfDischargeRate: NonNegative | None = attr(
        ll=71, din="6.7.4.6", access=LI, appl="-o-o", unit="%/month", clause="voluntary (Battery Pass LL#71)",
        description="Initial self-discharge rate")
    currentSelfDischargeRate: DynamicNonNegative | None = attr(
        ll=72, din="6.7.4.7", access=LI, level=IND, kind=DYN, appl="-o-o", unit="%/month",
        clause="voluntary (Battery Pass LL#72)", description="Current self-discharge rate")
    selfDischargeRateEvolution: list[DynamicNonNegative] | None = attr(
        ll=73, din="6.7.4.8", access=LI, level=IND, kind=DYN, appl="---x", unit="%/month", bms_only=True,
        annex="4(b)", clause="Annex XIII 4(b); Annex VII Part A(4)",
        description="Evolution of self-discharge rates", max_length=10000)
    initialInternalResistance: InternalResistance | None = attr(
        ll=74, din="6.7.5.2", annex="1(o)", unit=OHM, clause="Annex XIII 1(o); Annex IV Part A(3)",
        description="Initial internal resistance of battery cell, module and pack")
    internalResistanceIncrease: Percent | None = attr(
        ll=75, din="6.7.5.3", access=LI, level=IND, unit=PCT, annex="4(a)",
        clause="Annex XIII 4(a); Annex IV Part A(3)", description="Internal resistance increase of the pack")
    expectedLifetimeYears: Annotated[Number, Field(ge=0, le=200)] | None = attr(
        ll=76, din="6.7.6.2", access=LI, level=IND, unit="year", annex="4(a)",
        clause="Annex XIII 4(a); Annex IV Part A(5)", description="Expected lifetime in calendar years")
    expectedLifetimeCycles: Count | None = attr(
        ll=77, din="6.7.6.3", annex="1(j)", unit="cycle", clause="Annex XIII 1(j); Annex IV Part A(5)",
        description="Expected lifetime: number of charge-discharge cycles")
    fullCycles: DynamicCount | None = attr(
        ll=78, din="6.7.6.4", access=LI, level=IND, kind=DYN, unit="cycle", annex="4(d)",
        clause="Annex XIII 4(d); Annex VII Part B(5)", description="Number of full charging and discharging cycles")
    cycleLifeReferenceTest: LongText | None = attr(
        ll=79, din="6.7.6.5", annex="1(j)", clause="Annex XIII 1(j)",
        description="Reference test used for the expected cycle life")
    cycleLifeTestCRate: NonNegative | None = attr(
        ll=80, din="6.7.6.6", annex="1(p)", unit="1/h", clause="Annex XIII 1(p)",
        description="C-rate of the relevant cycle-life test")
    energyThroughput: DynamicNonNegative | None = attr(
        ll=81, din="6.7.6.7", access=LI, level=IND, kind=DYN, appl="-x-x", unit="kWh", bms_only=True,
        annex="4(b)", clause="Annex XIII 4(b); Annex VII Part B(2)", description="Energy throughput")
    capacityThroughput: DynamicNonNegative | None = attr(
        ll=82, din="6.7.6.8", access=LI, level=IND, kind=DYN, appl="-x-x", unit="Ah", bms_only=True,
        annex="4(b)", clause="Annex XIII 4(b); Annex VII Part B(3)", description="Capacity throughput")
    capacityThresholdForExhaustion: Percent | None = attr(
        ll=83, din="6.7.6.9", annex="1(k)", appl="x---", unit=PCT, clause="Annex XIII 1(k)",
        description="Capacity threshold for exhaustion (EV batteries only)")
    temperatureInformation: list[TemperatureRecord] | None = attr(
        ll=84, din="6.7.7.2", access=LI, level=IND, kind=DYN, unit=DEGC, annex="4(d)",
        clause="Annex XIII 4(d)", description="Periodically recorded operating temperature", max_length=10000)
    idleTemperatureLowerBoundary: Temperature | None = attr(
        ll=85, din="6.7.7.3", annex="1(l)", unit=DEGC, clause="Annex XIII 1(l)",
        description="Lower boundary of the temperature range the battery withstands when not in use")
    idleTemperatureUpperBoundary: Temperature | None = attr(
        ll=86, din="6.7.7.4", annex="1(l)", unit=DEGC, clause="Annex XIII 1(l)",
        description="Upper boundary of the temperature range the battery withstands when not in use")
    timeExtremeTemperatureAbove: DynamicNonNegative | None = attr(
        ll=87, din="6.7.7.5", access=LI, level=IND, kind=DYN, appl="-xxx", unit="h", bms_only=True,
        annex="4(b)", clause="Annex XIII 4(b); Annex VII Part B(4)",
        description="Time spent in extreme temperatures above the boundary")
    timeExtremeTemperatureBelow: DynamicNonNegative | None = attr(
        ll=88, din="6.7.7.6", access=LI, level=IND, kind=DYN, appl="-xxx", unit="h", bms_only=True,
        annex="4(b)", clause="Annex XIII 4(b); Annex VII Part B(4)",
        description="Time spent in extreme temperatures below the boundary")
    timeChargingExtremeTemperatureAbove: DynamicNonNegative | None = attr(
        ll=89, din="6.7.7.7", access=LI, level=IND, kind=DYN, appl="-xxx", unit="h", bms_only=True,
        annex="4(b)", clause="Annex XIII 4(b); Annex VII Part B(4)",
        description="Time spent charging during extreme temperatures above the boundary")
    timeChargingExtremeTemperatureBelow: DynamicNonNegative | None = attr(
        ll=90, din="6.7.7.8", access=LI, level=IND, kind=DYN, appl="-xxx", unit="h", bms_only=True,
        annex="4(b)", clause="Annex XIII 4(b); Annex VII Part B(4)",
        description="Time spent charging during extreme temperatures below the boundary")
    deepDischargeEvents: DynamicCount | None = attr(
        ll=91, din="6.7.8.2", access=LI, level=IND, kind=DYN, appl="oxox", unit="event", bms_only=True,
        annex="4(b)", clause="Annex XIII 4(b); Annex VII Part B(4)", description="Number of deep-discharge events")
    overchargeEvents: DynamicCount | None = attr(
        ll=92, din="6.7.8.3", access=LI, level=IND, kind=DYN, appl="oooo", unit="event",
        clause="voluntary (Battery Pass LL#92)", description="Number of overcharge events")
    negativeEvents: list[NegativeEvent] | None = attr(
        ll=93, din="6.7.8.4", access=LI, level=IND, kind=DYN, annex="4(d)", clause="Annex XIII 4(d)",
        description="Information on accidents and other negative events", max_length=1000)
    lastDynamicUpdate: Timestamp | None = attr(
        access=LI, level=IND, kind=DYN, appl="oooo", clause="Battery Pass BP-5 (timestamps on dynamic data)",
        description="Time of the most recent dynamic value in this version")


__all__ = [
    "BatteryStatus",
    "CarbonFootprint",
    "Circularity",
    "DynamicNumber",
    "GeneralProductInformation",
    "Labels",
    "MaterialComposition",
    "PerformanceAndDurability",
    "SupplyChainDueDiligence",
]
