"""Production-supervision metrics with their evidence (``pledgeledger.production/1``)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from api.deps import LedgerDep, Supervisor

router = APIRouter(prefix="/v1/production", tags=["production"])

DeviceId = Annotated[str, Query(min_length=1, max_length=64, description="the meter's or machine's device id")]
Period = Annotated[Literal["day", "month"], Query(description="UTC calendar days or months")]
From = Annotated[str, Query(alias="from", min_length=7, max_length=10, description="the first period: YYYY-MM-DD (day) or YYYY-MM (month)")]
To = Annotated[str, Query(alias="to", min_length=7, max_length=10, description="the last period, included")]

#: How every answer here is proven (the end of each route's description).
EVIDENCE = (
    "\n\nThe answer (`pledgeledger.production/1`) carries every reading it was computed from as "
    "`pledgeledger.multiproof/1` bundles, one per anchored batch, and lists readings not anchored yet under "
    "`pending`; each period says whether it is `complete` and names its `issues`. Verify it against the chain "
    "with `pledgeledger verify FILE --rpc URL`. Readable by the device's operator, banks and auditors."
)


@router.get(
    "/energy",
    summary="A power meter's kWh per day or month, with the readings that prove it",
    description="kWh per period from the meter's cumulative `energy_kwh`, interpolated linearly between readings; "
    "a count that goes down is a meter reset (README, Production metrics)." + EVIDENCE,
)
def energy(device: DeviceId, period: Period, start: From, end: To, org: Supervisor, ledger: LedgerDep) -> dict:
    return ledger.production(org, "energy", device, period=period, start=start, end=end)


@router.get(
    "/run-hours",
    summary="A machine's run hours per day or month, with the readings that prove it",
    description="Hours from each `equipment_state` reading with `running: true` to the device's next "
    "`equipment_state` reading (README, Production metrics)." + EVIDENCE,
)
def run_hours(device: DeviceId, period: Period, start: From, end: To, org: Supervisor, ledger: LedgerDep) -> dict:
    return ledger.production(org, "run_hours", device, period=period, start=start, end=end)


@router.get(
    "/utilisation",
    summary="A meter's month against the peak of the twelve before, and year-on-year growth",
    description="`utilisation` = this month's kWh ÷ the highest monthly kWh of the twelve before; `yoy_growth` = "
    "(this month − the same month a year before) ÷ the same month a year before; each month's kWh is in `periods`."
    + EVIDENCE,
)
def utilisation(
    device: DeviceId,
    month: Annotated[str, Query(min_length=7, max_length=7, description="the month YYYY-MM")],
    org: Supervisor,
    ledger: LedgerDep,
) -> dict:
    return ledger.production(org, "utilisation", device, month=month)
