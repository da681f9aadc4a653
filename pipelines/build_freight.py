"""Build the synthetic ``freight`` database behind the held-out golden dataset.

The database models what an analyst at a parcel and freight carrier is asked about: its depots
(warehouses, three of them regional hubs), the trucks and vans, the drivers, the shippers who book
consignments, the consignments themselves with their parcels, the trunk legs between depots, and the
tracking scans recorded along the way. Every value is generated here from ``random.Random(seed)`` and
fixed reference dates, so the same seed on the same SQLite version gives a byte-identical file.

Naming and value conventions (also in ``datasets/freight/README.md``) deliberately differ from ``bank``:

- PascalCase identifiers, singular table names (``Shipment``, ``Depot``, ``DeliveryEvent``), keys end in
  ``Id`` (``ShipmentId``, ``OriginDepotId``/``DestDepotId``: two foreign keys to ``Depot``), common
  abbreviations (``UnitWeightKg``, ``MaxPayloadKg``, ``Qty``, ``DistanceKm``);
- the current state of a shipment is a code (``Shipment.StatusCode``) looked up in ``ShipmentStatus``
  (``Code`` → ``Description``); the same codes label the scans in ``DeliveryEvent``;
- composite primary keys: ``ShipmentItem (ShipmentId, LineNo)`` and ``ShipmentLeg (ShipmentId, LegNo)``;
- ``DeliveryEvent.EventTime`` is an ISO timestamp ``'YYYY-MM-DD HH:MM:SS'``; every other date column is
  ISO ``'YYYY-MM-DD'``; bookings run from 2024-01-02 and the data ends at 2025-11-30 23:59:59;
- money (``ChargeAmount``, ``InsuredValue``, ``CreditLimit``) is ``NUMERIC(10, 2)``;
- NULLs are deliberate: ``DeliveredDate`` of shipments not (yet) delivered, ``ChargeAmount`` of cancelled
  shipments, ``InsuredValue`` of uninsured ones, ``CreditLimit`` of spot (non-contract) customers, missing
  customer e-mails and phones, ``LeftDate`` of drivers still employed, ``RetiredDate`` of vehicles in
  service, ``DepotId``/``DriverId``/``ExceptionReason`` on scans where they do not apply.

Usage::

    python -m pipelines.build_freight --out datasets/freight/freight.sqlite
"""

from __future__ import annotations

import math
import random
import sys
from datetime import date, datetime, timedelta
from itertools import pairwise
from pathlib import Path

from pipelines import sqlite_build
from pipelines.sqlite_build import iso, money, rand_date, write_database

DEFAULT_SEED = 20261130
FIRST_BOOKING = date(2024, 1, 2)
SNAPSHOT = date(2025, 11, 30)
CUTOFF = datetime(2025, 11, 30, 23, 59, 59)  # nothing after this instant is in the data
PEAK_START = date(2025, 11, 24)  # the last week before the snapshot is busier
PEAK_EXTRA = 60

SCHEMA = """
CREATE TABLE Depot (
    DepotId         INTEGER PRIMARY KEY,
    DepotCode       TEXT    NOT NULL UNIQUE,
    Name            TEXT    NOT NULL UNIQUE,
    City            TEXT    NOT NULL,
    Region          TEXT    NOT NULL CHECK (Region IN ('North', 'Central', 'South')),
    IsHub           INTEGER NOT NULL CHECK (IsHub IN (0, 1)),
    CapacityPallets INTEGER NOT NULL,
    OpenedDate      TEXT    NOT NULL
);

CREATE TABLE Customer (
    CustomerId      INTEGER PRIMARY KEY,
    CompanyName     TEXT    NOT NULL UNIQUE,
    ContactName     TEXT    NOT NULL,
    Email           TEXT,
    Phone           TEXT,
    City            TEXT    NOT NULL,
    AccountType     TEXT    NOT NULL CHECK (AccountType IN ('Contract', 'Spot')),
    CreditLimit     NUMERIC(10, 2),
    SignupDate      TEXT    NOT NULL
);

CREATE TABLE Vehicle (
    VehicleId       INTEGER PRIMARY KEY,
    RegPlate        TEXT    NOT NULL UNIQUE,
    VehicleType     TEXT    NOT NULL CHECK (VehicleType IN ('Van', 'Rigid', 'Tractor')),
    HomeDepotId     INTEGER NOT NULL REFERENCES Depot (DepotId),
    MaxPayloadKg    INTEGER NOT NULL,
    InServiceDate   TEXT    NOT NULL,
    RetiredDate     TEXT
);

CREATE TABLE Driver (
    DriverId        INTEGER PRIMARY KEY,
    FirstName       TEXT    NOT NULL,
    LastName        TEXT    NOT NULL,
    HomeDepotId     INTEGER NOT NULL REFERENCES Depot (DepotId),
    LicenceClass    TEXT    NOT NULL CHECK (LicenceClass IN ('B', 'C', 'CE')),
    HireDate        TEXT    NOT NULL,
    LeftDate        TEXT
);

CREATE TABLE ShipmentStatus (
    Code            TEXT    PRIMARY KEY,
    Description     TEXT    NOT NULL UNIQUE,
    IsFinal         INTEGER NOT NULL CHECK (IsFinal IN (0, 1))
);

CREATE TABLE Shipment (
    ShipmentId      INTEGER PRIMARY KEY,
    TrackingNo      TEXT    NOT NULL UNIQUE,
    CustomerId      INTEGER NOT NULL REFERENCES Customer (CustomerId),
    OriginDepotId   INTEGER NOT NULL REFERENCES Depot (DepotId),
    DestDepotId     INTEGER NOT NULL REFERENCES Depot (DepotId),
    ServiceLevel    TEXT    NOT NULL CHECK (ServiceLevel IN ('Economy', 'Standard', 'Express')),
    BookedDate      TEXT    NOT NULL,
    PromisedDate    TEXT    NOT NULL,
    DeliveredDate   TEXT,
    StatusCode      TEXT    NOT NULL REFERENCES ShipmentStatus (Code),
    ChargeAmount    NUMERIC(10, 2),
    InsuredValue    NUMERIC(10, 2)
);

CREATE TABLE ShipmentItem (
    ShipmentId      INTEGER NOT NULL REFERENCES Shipment (ShipmentId),
    LineNo          INTEGER NOT NULL,
    PackageType     TEXT    NOT NULL CHECK (PackageType IN ('Envelope', 'Box', 'Tube', 'Crate', 'Pallet')),
    Qty             INTEGER NOT NULL CHECK (Qty > 0),
    UnitWeightKg    REAL    NOT NULL,
    IsFragile       INTEGER NOT NULL CHECK (IsFragile IN (0, 1)),
    PRIMARY KEY (ShipmentId, LineNo)
);

CREATE TABLE ShipmentLeg (
    ShipmentId      INTEGER NOT NULL REFERENCES Shipment (ShipmentId),
    LegNo           INTEGER NOT NULL,
    FromDepotId     INTEGER NOT NULL REFERENCES Depot (DepotId),
    ToDepotId       INTEGER NOT NULL REFERENCES Depot (DepotId),
    VehicleId       INTEGER NOT NULL REFERENCES Vehicle (VehicleId),
    DriverId        INTEGER NOT NULL REFERENCES Driver (DriverId),
    DepartureDate   TEXT    NOT NULL,
    DistanceKm      INTEGER NOT NULL,
    PRIMARY KEY (ShipmentId, LegNo)
);

CREATE TABLE DeliveryEvent (
    EventId         INTEGER PRIMARY KEY,
    ShipmentId      INTEGER NOT NULL REFERENCES Shipment (ShipmentId),
    EventTime       TEXT    NOT NULL,
    StatusCode      TEXT    NOT NULL REFERENCES ShipmentStatus (Code),
    DepotId         INTEGER REFERENCES Depot (DepotId),
    DriverId        INTEGER REFERENCES Driver (DriverId),
    ExceptionReason TEXT
);

CREATE INDEX IX_Shipment_Customer ON Shipment (CustomerId);
CREATE INDEX IX_Shipment_Origin ON Shipment (OriginDepotId);
CREATE INDEX IX_Shipment_Dest ON Shipment (DestDepotId);
CREATE INDEX IX_ShipmentLeg_Driver ON ShipmentLeg (DriverId);
CREATE INDEX IX_DeliveryEvent_Shipment ON DeliveryEvent (ShipmentId);
CREATE INDEX IX_DeliveryEvent_Time ON DeliveryEvent (EventTime);
"""

# --- reference data (invented for this dataset) ---------------------------------------------------

DEPOTS = [  # code, name, city, region, hub, capacity (pallets), opened, map x/y in km
    ("NBY", "Norbury Hub", "Norbury", "North", 1, 2400, date(2009, 4, 6), (120, 610)),
    ("THB", "Thornby", "Thornby", "North", 0, 650, date(2013, 9, 2), (60, 700)),
    ("CSM", "Castlemere", "Castlemere", "North", 0, 800, date(2016, 3, 14), (210, 545)),
    ("STB", "Stonebridge Hub", "Stonebridge", "Central", 1, 3100, date(2007, 1, 15), (165, 380)),
    ("MLV", "Marlow Vale", "Marlow Vale", "Central", 0, 720, date(2014, 6, 23), (265, 330)),
    ("FRB", "Ferrybank", "Ferrybank", "Central", 0, 540, date(2018, 10, 1), (75, 305)),
    ("WXC", "Wexcombe Hub", "Wexcombe", "South", 1, 2750, date(2011, 5, 9), (190, 140)),
    ("RDX", "Redhill Cross", "Redhill", "South", 0, 610, date(2015, 2, 16), (305, 95)),
    ("OAK", "Oakhurst", "Oakhurst", "South", 0, 480, date(2020, 8, 3), (85, 60)),
    ("PLD", "Pellham Docks", "Pellham", "South", 0, 1200, date(2019, 11, 18), (250, 20)),
    ("RVM", "Ravenmoor", "Ravenmoor", "North", 0, 400, date(2025, 11, 10), (300, 660)),
]
NEW_DEPOT = "RVM"  # opened in November 2025: a van and a driver, no shipments yet
RETIREMENTS = [("NBY", date(2024, 9, 30)), ("CSM", date(2025, 3, 31))]  # depot of a retired rigid, date
OTHER_CITIES = ["Aldermoor", "Gorsey Bank", "Kettleby"]  # shippers based here; no depot

STATUSES = [  # code, description, final
    ("BKD", "Booked", 0),
    ("PUP", "Picked up", 0),
    ("DEP", "Departed depot", 0),
    ("ARR", "Arrived at depot", 0),
    ("OFD", "Out for delivery", 0),
    ("EXC", "Delivery attempt failed", 0),
    ("HLD", "Held at depot", 0),  # defined but never used: no shipment is or was on hold
    ("DEL", "Delivered", 1),
    ("RTS", "Returned to sender", 1),
    ("CAN", "Cancelled", 1),
]

EXCEPTION_REASONS = ["Recipient not available", "Address not found", "Access refused", "Business closed",
                     "Damaged in transit"]

FIRST_NAMES = [
    "Alice", "Bruno", "Carmen", "Dmitri", "Eleanor", "Farid", "Gemma", "Hugo", "Imogen", "Jonas",
    "Keira", "Lorenzo", "Maeve", "Nikolai", "Orla", "Pavel", "Quinn", "Rhea", "Stellan", "Tamsin",
    "Uma", "Vikram", "Wanda", "Xavier", "Yara", "Zeke", "Anouk", "Bilal", "Cora", "Declan",
    "Esme", "Femi", "Greta", "Hamish", "Ines", "Joaquin", "Kaito", "Lucia", "Malik", "Nell",
]
LAST_NAMES = [
    "Ashdown", "Blackwood", "Calloway", "Drummond", "Ellery", "Fairclough", "Gallagher", "Hargreaves",
    "Iverson", "Jessop", "Kavanagh", "Lindqvist", "Mbeki", "Northcott", "Oyelaran", "Pemberton",
    "Quayle", "Radcliffe", "Sorensen", "Trevelyan", "Underhill", "Varga", "Whitlock", "Yilmaz",
    "Zielinski", "Abernathy", "Bexley", "Crowther", "Dunmore", "Esposito",
]
COMPANY_STEMS = [
    "Alder & Finch", "Bluecrest", "Copperleaf", "Driftwood", "Emberly", "Foxglove", "Granite Peak",
    "Hollybrook", "Ironbark", "Juniper Lane", "Kestrel", "Larkspur", "Millstone", "Nettlefield",
    "Orchard Row", "Pinecroft", "Quarry Hill", "Rosethorn", "Saltmarsh", "Tidewater", "Umberfield",
    "Vantage", "Willowmere", "Yarrow", "Zephyr", "Brightwell", "Cobblestone", "Northwind",
]
COMPANY_TRADES = [
    "Homeware", "Outdoor Gear", "Ceramics", "Cycles", "Print Studio", "Pet Supplies", "Bakery Supplies",
    "Auto Parts", "Garden Centre", "Lighting", "Textiles", "Pharmacy", "Books", "Electronics",
    "Furniture", "Coffee Roasters", "Tools", "Wine Merchants",
]

SERVICE_DAYS = {"Express": 1, "Standard": 2, "Economy": 4}  # promised transit in days, +1 between regions
BASE_CHARGE = {"Economy": 6.5, "Standard": 9.0, "Express": 17.5}
PICKUP_HOURS = {"Economy": (3, 30), "Standard": (2, 20), "Express": (1, 3)}  # booking to pickup
WAIT_HOURS = {"Economy": (4, 20), "Standard": (1, 8), "Express": (0, 1)}  # sorting time before a leg
PER_KG = {"Economy": 0.32, "Standard": 0.48, "Express": 0.9}
PACKAGES = {  # type -> (weight range per piece in kg, quantity choices)
    "Envelope": ((0.1, 0.5), [1, 1, 2, 5]),
    "Box": ((0.8, 18.0), [1, 1, 2, 3, 4, 6]),
    "Tube": ((0.4, 3.0), [1, 1, 2]),
    "Crate": ((15.0, 60.0), [1, 1, 2]),
    "Pallet": ((120.0, 650.0), [1, 1, 1, 2]),
}

def _ts(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")
def _next_morning(rng: random.Random, after: datetime) -> datetime:
    """Start of the first delivery round after ``after``: 07:00-09:00, the same day if before 08:00."""
    day = after.date() if after.hour < 8 else after.date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, 7) + timedelta(minutes=rng.randint(0, 120),
                                                                 seconds=rng.randint(0, 59))


def _distance(a: tuple[int, int], b: tuple[int, int]) -> int:
    return round(math.hypot(a[0] - b[0], a[1] - b[1]) * 1.18)


def _generate(rng: random.Random) -> dict[str, list[tuple]]:
    rows: dict[str, list[tuple]] = {}

    # depots
    depots = [(i, code, name, city, region, hub, cap, iso(opened))
              for i, (code, name, city, region, hub, cap, opened, _) in enumerate(DEPOTS, 1)]
    rows["Depot"] = depots
    depot_id = {d[1]: d[0] for d in depots}
    xy = {depot_id[code]: pos for code, *_, pos in DEPOTS}
    region_of = {d[0]: d[4] for d in depots}
    hub_of_region = {d[4]: d[0] for d in depots if d[5] == 1}
    new_depot = depot_id[NEW_DEPOT]
    working = [d[0] for d in depots if d[0] != new_depot]
    depot_by_city = {d[3]: d[0] for d in depots if d[0] != new_depot}

    rows["ShipmentStatus"] = list(STATUSES)

    # customers (shippers)
    names = rng.sample([f"{s} {t}" for s in COMPANY_STEMS for t in COMPANY_TRADES], 160)
    cities = [d[3] for d in depots if d[0] != new_depot] + OTHER_CITIES
    customers = []
    for cid, company in enumerate(names, 1):
        contact = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        slug = "".join(ch for ch in company.lower() if ch.isalnum())
        email = None if rng.random() < 0.1 else f"shipping@{slug}.example.com"
        phone = None if rng.random() < 0.15 else f"555-{rng.randint(100, 999):03d}-{rng.randint(0, 9999):04d}"
        city = rng.choices(cities, weights=[8 if c not in OTHER_CITIES else 3 for c in cities])[0]
        account = rng.choices(["Contract", "Spot"], weights=[45, 55])[0]
        limit = float(rng.choice([2000, 5000, 10000, 15000, 25000, 50000])) if account == "Contract" else None
        signup = rand_date(rng, date(2018, 1, 1), date(2025, 11, 20))
        customers.append((cid, company, contact, email, phone, city, account, limit, iso(signup)))
    rows["Customer"] = customers

    # vehicles: a van at every depot, rigid trucks at every working depot, tractor units at the hubs
    vehicles: list[tuple] = []
    plates: set[str] = set()
    for d in depots:
        fleet = ["Van"]
        if d[0] != new_depot:
            fleet += ["Rigid"] * (3 if d[5] else rng.choice([1, 2]))
            fleet += ["Tractor"] * (3 if d[5] else 0)
        for kind in fleet:
            plate = f"{d[1]}-{rng.randint(100, 999)}{rng.choice('ABCDEFGHJKLMNPRSTVWXY')}"
            while plate in plates:
                plate = f"{d[1]}-{rng.randint(100, 999)}{rng.choice('ABCDEFGHJKLMNPRSTVWXY')}"
            plates.add(plate)
            payload = {"Van": rng.choice([800, 1000, 1200]), "Rigid": rng.choice([7500, 9000, 12000]),
                       "Tractor": rng.choice([24000, 26000, 28000])}[kind]
            opened = date.fromisoformat(d[7])
            in_service = rand_date(rng, max(opened, date(2016, 1, 1)), date(2023, 6, 30)) \
                if d[0] != new_depot else opened
            vehicles.append((len(vehicles) + 1, plate, kind, d[0], payload, iso(in_service), None))
    # two rigid trucks were retired during the period, each replaced shortly before by a newer one
    for code, retired in RETIREMENTS:
        idx = next(i for i, v in enumerate(vehicles) if v[2] == "Rigid" and v[3] == depot_id[code])
        old = vehicles[idx]
        vehicles[idx] = (*old[:6], iso(retired))
        plate = f"{code}-{rng.randint(100, 999)}Z"  # no first registration above ends in Z
        vehicles.append((len(vehicles) + 1, plate, old[2], old[3], old[4] + 1000,
                         iso(retired - timedelta(days=rng.randint(3, 20))), None))
    rows["Vehicle"] = vehicles

    # drivers: last-mile (B), rigid (C) and articulated (CE) licences; some have left
    drivers: list[tuple] = []
    for d in depots:
        if d[0] == new_depot:
            plan = ["B"]
        elif d[5]:
            plan = ["B", "B", "B", "C", "C", "CE", "CE", "CE"]
        else:
            plan = ["B", "B", "C", "C"] + (["B"] if rng.random() < 0.5 else [])
        for lic in plan:
            opened = date.fromisoformat(d[7])
            lo = max(opened, date(2012, 1, 1)) if d[0] != new_depot else opened
            hired = rand_date(rng, lo, date(2023, 12, 1)) if d[0] != new_depot else lo
            drivers.append((len(drivers) + 1, rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES), d[0], lic,
                            iso(hired), None))
    # some drivers leave and are replaced; the first replacement starts two days before the snapshot
    leavers = rng.sample([dr for dr in drivers if dr[3] != new_depot], 6)
    for k, dr in enumerate(sorted(leavers)):
        left = rand_date(rng, date(2024, 3, 1), date(2025, 9, 30))
        drivers[dr[0] - 1] = (*dr[:6], iso(left))
        start = left + timedelta(days=rng.randint(7, 40)) if k else date(2025, 11, 28)
        drivers.append((len(drivers) + 1, rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES), dr[3], dr[4],
                        iso(start), None))
    rows["Driver"] = drivers

    def on_duty(depot: int, when: date, classes: tuple[str, ...]) -> list[int]:
        return [dr[0] for dr in drivers if dr[3] == depot and dr[4] in classes
                and date.fromisoformat(dr[5]) <= when and (dr[6] is None or when < date.fromisoformat(dr[6]))]

    def trucks(depot: int, when: date, kind: str) -> list[int]:
        return [v[0] for v in vehicles if v[3] == depot and v[2] == kind
                and date.fromisoformat(v[5]) <= when and (v[6] is None or when <= date.fromisoformat(v[6]))]

    # shipments, parcels, legs and scans
    inactive = set(rng.sample(range(len(customers)), 9))  # these customers never book anything
    activity = [0.0 if i in inactive else rng.lognormvariate(0, 0.9) for i in range(len(customers))]
    hubs = sorted(hub_of_region.values())
    dest_weights = [4 if d in hubs else 2 for d in working]
    n_shipments = 900
    bookings = [rand_date(rng, FIRST_BOOKING, SNAPSHOT) for _ in range(n_shipments)]
    bookings += [rand_date(rng, PEAK_START, SNAPSHOT) for _ in range(PEAK_EXTRA)]  # pre-holiday peak
    bookings.sort()
    shipments: list[list] = []
    items: list[tuple] = []
    legs: list[tuple] = []
    events: list[tuple] = []  # (time, shipment, seq, code, depot, driver, reason)
    tracking: set[str] = set()
    for sid, booked in enumerate(bookings, 1):
        while True:
            cust = rng.choices(customers, weights=activity)[0]
            if date.fromisoformat(cust[8]) <= booked:
                break
        home = depot_by_city.get(cust[5])
        origin = home if home is not None and rng.random() < 0.85 else rng.choice(working)
        dest = origin if rng.random() < 0.09 else rng.choices(working, weights=dest_weights)[0]
        service = rng.choices(["Economy", "Standard", "Express"], weights=[25, 55, 20])[0]
        zones = 0 if region_of[origin] == region_of[dest] else 1
        promised = booked + timedelta(days=SERVICE_DAYS[service] + zones)
        number = f"FX{rng.randint(100000000, 999999999)}"
        while number in tracking:
            number = f"FX{rng.randint(100000000, 999999999)}"
        tracking.add(number)

        # parcels
        n_lines = rng.choices([1, 2, 3, 4], weights=[52, 28, 14, 6])[0]
        weight = 0.0
        fragile_any = False
        for line in range(1, n_lines + 1):
            kind = rng.choices(list(PACKAGES), weights=[14, 58, 8, 13, 7])[0]
            (lo, hi), qtys = PACKAGES[kind]
            qty = rng.choice(qtys)
            unit = round(rng.uniform(lo, hi), 1 if kind in ("Crate", "Pallet") else 2)
            fragile = 1 if kind in ("Box", "Crate") and rng.random() < 0.18 else 0
            fragile_any = fragile_any or bool(fragile)
            weight += unit * qty
            items.append((sid, line, kind, qty, unit, fragile))

        # route: origin -> own hub -> destination hub -> destination (skipping repeats)
        stops = [origin]
        for stop in (hub_of_region[region_of[origin]], hub_of_region[region_of[dest]], dest):
            if stop != stops[-1] and origin != dest:  # a local shipment never leaves its depot
                stops.append(stop)
        distance_total = sum(_distance(xy[a], xy[b]) for a, b in pairwise(stops))
        charge = BASE_CHARGE[service] + PER_KG[service] * weight + 0.015 * distance_total
        charge += 4.0 if fragile_any else 0.0
        insured = float(rng.choice([250, 500, 1000, 2500, 5000])) if rng.random() < 0.22 else None

        t = datetime(booked.year, booked.month, booked.day, 8) + timedelta(
            minutes=rng.randint(0, 9 * 60), seconds=rng.randint(0, 59))
        seq = 0

        def scan(when: datetime, code: str, depot: int | None, driver: int | None, reason: str | None = None,
                 _sid: int = sid) -> None:
            nonlocal seq
            seq += 1
            events.append((when, _sid, seq, code, depot, driver, reason))

        scan(t, "BKD", origin, None)
        if rng.random() < 0.035:  # cancelled before pickup
            scan(t + timedelta(hours=rng.randint(1, 30), minutes=rng.randint(0, 59)), "CAN", None, None)
            shipments.append([sid, number, cust[0], origin, dest, service, iso(booked), iso(promised), None,
                              None, money(charge), insured])
            continue
        t += timedelta(hours=rng.randint(*PICKUP_HOURS[service]), minutes=rng.randint(0, 59))
        pickup_pool = on_duty(origin, t.date(), ("B", "C"))
        scan(t, "PUP", origin, rng.choice(pickup_pool))
        delay_leg = rng.randrange(len(stops) - 1) if len(stops) > 1 and rng.random() < 0.12 else None
        for leg_no, (a, b) in enumerate(pairwise(stops), 1):
            t += timedelta(hours=rng.randint(*WAIT_HOURS[service]), minutes=rng.randint(0, 59))
            if leg_no - 1 == delay_leg:
                t += timedelta(hours=rng.randint(20, 70))  # missed trunk, weather, breakdown
            km = _distance(xy[a], xy[b])
            kind = "Tractor" if a in hubs and b in hubs else "Rigid"
            # trunk trucks and drivers come from the departing depot (a rigid from the receiving one if
            # the departing depot has none in service that day)
            home_depot = a if kind == "Tractor" or trucks(a, t.date(), "Rigid") else b
            vehicle = rng.choice(trucks(home_depot, t.date(), kind))
            driver = rng.choice(on_duty(home_depot, t.date(), ("CE",) if kind == "Tractor" else ("C", "CE")))
            scan(t, "DEP", a, driver)
            legs.append((sid, leg_no, a, b, vehicle, driver, t, km))
            t += timedelta(minutes=round(km / 62 * 60) + rng.randint(10, 50))
            scan(t, "ARR", b, None)
        if len(stops) == 1 and rng.random() < 0.12:
            t += timedelta(hours=rng.randint(20, 50))  # local parcel that missed the round
        for attempt in range(3):  # up to three delivery attempts, then back to the sender
            t = _next_morning(rng, t + timedelta(hours=1))
            courier = rng.choice(on_duty(dest, t.date(), ("B",)) or on_duty(dest, t.date(), ("C",)))
            scan(t, "OFD", dest, courier)
            t += timedelta(hours=rng.randint(1, 7), minutes=rng.randint(0, 59), seconds=rng.randint(0, 59))
            if rng.random() < 0.1:
                reason = rng.choices(EXCEPTION_REASONS, weights=[50, 15, 12, 18, 5])[0]
                scan(t, "EXC", None, courier, reason)
                if reason == "Damaged in transit" or attempt == 2 or (reason == "Address not found" and attempt):
                    t = _next_morning(rng, t) + timedelta(hours=2)
                    scan(t, "RTS", dest, None)
                    break
                continue
            scan(t, "DEL", None, courier)
            break
        shipments.append([sid, number, cust[0], origin, dest, service, iso(booked), iso(promised), None, None,
                          money(charge), insured])

    # cut everything at the snapshot: later scans and legs have not happened yet
    events = [e for e in events if e[0] <= CUTOFF]
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    last: dict[int, tuple] = {}
    for e in events:
        last[e[1]] = e
    for s in shipments:
        final = last[s[0]]
        s[9] = final[3]  # the current status is the latest scan
        if final[3] == "DEL":
            s[8] = iso(final[0].date())
        elif final[3] == "CAN":
            s[10] = None  # cancelled shipments are not charged
    rows["Shipment"] = [tuple(s) for s in shipments]
    rows["ShipmentItem"] = items
    rows["ShipmentLeg"] = [(*lg[:6], iso(lg[6].date()), lg[7]) for lg in legs if lg[6] <= CUTOFF]
    rows["DeliveryEvent"] = [(i, e[1], _ts(e[0]), e[3], e[4], e[5], e[6]) for i, e in enumerate(events, 1)]
    return rows


INSERT_ORDER = ["Depot", "Customer", "Vehicle", "Driver", "ShipmentStatus", "Shipment", "ShipmentItem",
                "ShipmentLeg", "DeliveryEvent"]


def build_freight_database(out: Path, seed: int = DEFAULT_SEED) -> Path:
    """Generate the freight database at ``out`` (written to a temp file, then renamed) and return its path."""
    return write_database(out, SCHEMA, INSERT_ORDER, _generate(random.Random(seed)))


def main(argv: list[str] | None = None) -> int:
    return sqlite_build.main(argv, prog="python -m pipelines.build_freight", doc=__doc__ or "",
                             default_out=Path("datasets/freight/freight.sqlite"), default_seed=DEFAULT_SEED,
                             build=build_freight_database, tables=INSERT_ORDER)


if __name__ == "__main__":
    sys.exit(main())
