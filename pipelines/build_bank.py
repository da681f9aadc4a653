"""Build the synthetic ``bank`` database behind the bundled default golden dataset.

The database models the data an "AI analyst" for a retail bank would be asked about: branches,
customers, their accounts, card/retail purchases against a product catalogue, staff and loans. Every
value is generated here from ``random.Random(seed)`` and fixed reference dates, so the same seed on the
same SQLite version gives a byte-identical file (its md5 is what DVC and ``Dataset.version`` record).

Conventions (also in ``datasets/bank/README.md``):

- dates are ISO ``TEXT`` (``'YYYY-MM-DD'``); the data snapshot date is 2025-12-31 and transactions
  cover 2022-01-01 .. 2025-12-31;
- ``transaction_history.amount`` is signed from the account holder's side: negative for debits
  (purchases, withdrawals, fees, outgoing transfers), positive for credits;
- ``accounts.balance`` is the balance at the snapshot date; for credit and loan accounts it is the
  amount owed; closed accounts have balance 0 and a ``closed_date``;
- NULLs are deliberate: missing customer e-mails/phones/credit scores, ``credit_limit`` outside credit
  accounts, ``channel`` on system-generated entries (fees, interest), ``merchant``/``product_id`` on
  non-purchase transactions, ``branch_id``/``manager_id`` for head-office staff.

Usage::

    python -m pipelines.build_bank --out datasets/bank/bank.sqlite
"""

from __future__ import annotations

import random
import sys
from datetime import date, timedelta
from pathlib import Path

from pipelines import sqlite_build
from pipelines.sqlite_build import iso, money, rand_date, write_database

DEFAULT_SEED = 20261125
DATA_START = date(2022, 1, 1)
SNAPSHOT = date(2025, 12, 31)

SCHEMA = """
CREATE TABLE branches (
    branch_id     INTEGER PRIMARY KEY,
    branch_name   TEXT    NOT NULL UNIQUE,
    city          TEXT    NOT NULL,
    region        TEXT    NOT NULL CHECK (region IN ('North', 'South', 'East', 'West')),
    opened_date   TEXT    NOT NULL
);

CREATE TABLE customers (
    customer_id   INTEGER PRIMARY KEY,
    first_name    TEXT    NOT NULL,
    last_name     TEXT    NOT NULL,
    email         TEXT,
    phone         TEXT,
    birth_date    TEXT    NOT NULL,
    city          TEXT    NOT NULL,
    segment       TEXT    NOT NULL CHECK (segment IN ('retail', 'premier', 'business')),
    credit_score  INTEGER CHECK (credit_score BETWEEN 300 AND 850),
    joined_date   TEXT    NOT NULL
);

CREATE TABLE employees (
    employee_id   INTEGER PRIMARY KEY,
    first_name    TEXT    NOT NULL,
    last_name     TEXT    NOT NULL,
    title         TEXT    NOT NULL,
    branch_id     INTEGER REFERENCES branches (branch_id),
    manager_id    INTEGER REFERENCES employees (employee_id),
    hire_date     TEXT    NOT NULL,
    salary        INTEGER NOT NULL
);

CREATE TABLE accounts (
    account_id     INTEGER PRIMARY KEY,
    account_number TEXT    NOT NULL UNIQUE,
    customer_id    INTEGER NOT NULL REFERENCES customers (customer_id),
    branch_id      INTEGER NOT NULL REFERENCES branches (branch_id),
    account_type   TEXT    NOT NULL CHECK (account_type IN ('checking', 'savings', 'credit', 'loan')),
    opened_date    TEXT    NOT NULL,
    closed_date    TEXT,
    status         TEXT    NOT NULL CHECK (status IN ('active', 'frozen', 'closed')),
    balance        NUMERIC(12, 2) NOT NULL,
    credit_limit   NUMERIC(12, 2)
);

CREATE TABLE loans (
    loan_id        INTEGER PRIMARY KEY,
    account_id     INTEGER NOT NULL UNIQUE REFERENCES accounts (account_id),
    loan_type      TEXT    NOT NULL CHECK (loan_type IN ('mortgage', 'auto', 'personal', 'business')),
    principal      NUMERIC(12, 2) NOT NULL,
    interest_rate  NUMERIC(5, 2)  NOT NULL,
    term_months    INTEGER NOT NULL,
    start_date     TEXT    NOT NULL,
    status         TEXT    NOT NULL CHECK (status IN ('current', 'late', 'defaulted', 'paid_off')),
    officer_id     INTEGER NOT NULL REFERENCES employees (employee_id)
);

CREATE TABLE products (
    product_id    INTEGER PRIMARY KEY,
    product_name  TEXT    NOT NULL UNIQUE,
    category      TEXT    NOT NULL,
    unit_price    NUMERIC(10, 2) NOT NULL
);

CREATE TABLE transaction_history (
    txn_id        INTEGER PRIMARY KEY,
    account_id    INTEGER NOT NULL REFERENCES accounts (account_id),
    txn_date      TEXT    NOT NULL,
    amount        NUMERIC(12, 2) NOT NULL,
    txn_type      TEXT    NOT NULL CHECK (txn_type IN
                      ('deposit', 'withdrawal', 'purchase', 'refund', 'transfer', 'payment', 'fee', 'interest')),
    channel       TEXT    CHECK (channel IN ('branch', 'online', 'atm', 'mobile', 'pos')),
    merchant      TEXT,
    product_id    INTEGER REFERENCES products (product_id),
    quantity      INTEGER,
    description   TEXT    NOT NULL
);

CREATE INDEX idx_accounts_customer ON accounts (customer_id);
CREATE INDEX idx_accounts_branch ON accounts (branch_id);
CREATE INDEX idx_txn_account ON transaction_history (account_id);
CREATE INDEX idx_txn_date ON transaction_history (txn_date);
CREATE INDEX idx_employees_branch ON employees (branch_id);
"""

# --- reference data (invented for this dataset) ---------------------------------------------------

BRANCHES = [  # name, city, region, opened
    ("Ashbury Main", "Ashbury", "North", date(1998, 3, 2)),
    ("Brookhaven", "Brookhaven", "North", date(2003, 6, 16)),
    ("Kingsbridge Downtown", "Kingsbridge", "East", date(1995, 9, 4)),
    ("Kingsbridge Riverside", "Kingsbridge", "East", date(2016, 4, 11)),
    ("Carlow Bay", "Carlow Bay", "East", date(2008, 1, 21)),
    ("Dunmore", "Dunmore", "South", date(2001, 11, 5)),
    ("Elmsford", "Elmsford", "South", date(2012, 7, 9)),
    ("Fairhaven", "Fairhaven", "South", date(2019, 2, 18)),
    ("Glenrock", "Glenrock", "West", date(2005, 5, 23)),
    ("Harlow Park", "Harlow", "West", date(2014, 10, 13)),
    ("Ironwood", "Ironwood", "North", date(2022, 8, 1)),
    ("Lakeside", "Lakeside", "West", date(2025, 10, 6)),  # newest: staffed, no accounts yet
]
NEW_BRANCH = "Lakeside"
OTHER_CITIES = ["Millbrook", "Northgate", "Oakridge"]  # customers live here; no branch

FIRST_NAMES = [
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Elijah", "Sophia", "James", "Isabella", "William",
    "Mia", "Lucas", "Amelia", "Mateo", "Harper", "Benjamin", "Evelyn", "Henry", "Abigail", "Daniel",
    "Emily", "Samuel", "Ella", "Jack", "Grace", "Owen", "Chloe", "Leo", "Nora", "Ethan",
    "Zoe", "Aiden", "Layla", "Caleb", "Hannah", "Isaac", "Aria", "Ryan", "Priya", "Omar",
    "Mei", "Diego", "Fatima", "Kenji", "Sofia", "Arjun", "Lena", "Tomas", "Aisha", "Marco",
    "Ingrid", "Yusuf", "Clara", "Rafael", "Naomi", "Victor", "Julia", "Adrian", "Rosa", "Felix",
]
LAST_NAMES = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee",
    "Thompson", "White", "Harris", "Clark", "Lewis", "Walker", "Hall", "Allen", "Young", "King",
    "Wright", "Scott", "Green", "Baker", "Adams", "Nelson", "Hill", "Campbell", "Mitchell", "Carter",
    "Patel", "Nguyen", "Kim", "Chen", "Singh", "Okafor", "Novak", "Rossi", "Schmidt", "Haddad",
    "Larsen", "Silva", "Kowalski", "Murphy", "Sato", "Ibrahim", "Fischer", "Costa", "Byrne", "Dubois",
]

PRODUCTS = {  # category -> [(name, unit_price)]
    "electronics": [("Wireless Earbuds", 79.99), ("Smartwatch", 249.00), ("Bluetooth Speaker", 59.50),
                    ("Laptop Sleeve", 24.99), ("Tablet 10-inch", 329.00), ("USB-C Charger", 19.99)],
    "groceries": [("Organic Coffee Beans 1kg", 18.40), ("Olive Oil 1L", 11.25), ("Weekly Produce Box", 34.00),
                  ("Sparkling Water 12-pack", 6.75), ("Dark Chocolate Bar", 3.20), ("Breakfast Cereal", 4.85)],
    "home": [("Cast Iron Skillet", 42.00), ("Cotton Bath Towel Set", 38.50), ("LED Desk Lamp", 27.95),
             ("Robot Vacuum", 299.00), ("Air Purifier", 159.00), ("Ceramic Dinner Set", 64.00)],
    "apparel": [("Running Shoes", 95.00), ("Rain Jacket", 120.00), ("Wool Sweater", 68.00),
                ("Denim Jeans", 54.00), ("Leather Belt", 29.00)],
    "health": [("Vitamin D Supplements", 12.99), ("Electric Toothbrush", 49.99), ("First Aid Kit", 22.50),
               ("Yoga Mat", 31.00), ("Digital Thermometer", 15.75)],
    "travel": [("Carry-on Suitcase", 139.00), ("Travel Adapter", 16.50), ("Neck Pillow", 14.00),
               ("Weekend Rail Pass", 89.00), ("Airport Lounge Pass", 45.00)],
    "entertainment": [("Streaming Subscription (monthly)", 12.99), ("Concert Ticket", 75.00),
                      ("Board Game", 36.00), ("Movie Night Voucher", 22.00)],
    "services": [("Phone Repair", 85.00), ("Dry Cleaning", 18.00), ("Car Wash Premium", 25.00)],
}
# Products nobody has bought: useful for anti-join questions.
UNSOLD = {"Tablet 10-inch", "Ceramic Dinner Set", "Leather Belt", "Digital Thermometer", "Board Game"}

MERCHANTS_BY_CATEGORY = {
    "electronics": ["Volt Electronics", "BrightMart"],
    "groceries": ["Harbor Market", "BrightMart", "Greenleaf Grocers"],
    "home": ["Hearth & Home", "BrightMart"],
    "apparel": ["Urban Threads", "BrightMart"],
    "health": ["Greenleaf Pharmacy"],
    "travel": ["Cloudline Travel"],
    "entertainment": ["Marquee Tickets", "BrightMart"],
    "services": ["Fixit Corner", "Sparkle Car Wash"],
}
OTHER_MERCHANTS = ["Metro Fuel", "Pine Street Cafe", "Sunset Diner", "QuickRide", "City Utilities",
                   "Northline Telecom", "Corner Bakery", "Summit Gym"]

# Shapes of activity per account type: (weight, txn_type) lists; channels per type.
CHANNELS = {
    "deposit": (["branch", "atm", "mobile", "online"], [30, 25, 30, 15]),
    "withdrawal": (["atm", "branch"], [80, 20]),
    "purchase": (["pos", "online", "mobile"], [55, 30, 15]),
    "transfer": (["online", "mobile", "branch"], [50, 40, 10]),
    "payment": (["online", "mobile", "branch"], [55, 30, 15]),
}
MIX = {
    "checking": [("purchase", 46), ("deposit", 19), ("withdrawal", 14), ("transfer", 12), ("fee", 5),
                 ("refund", 4)],
    "savings": [("deposit", 42), ("transfer", 36), ("interest", 18), ("withdrawal", 4)],
    "credit": [("purchase", 72), ("payment", 15), ("fee", 4), ("interest", 4), ("refund", 5)],
}
MONTHLY_RATE = {"checking": 0.95, "savings": 0.4, "credit": 0.95}


def _pick(rng: random.Random, spec: tuple[list[str], list[int]]) -> str:
    values, weights = spec
    return rng.choices(values, weights=weights)[0]


def _add_months(value: date, months: int) -> date:
    y, m = divmod(value.month - 1 + months, 12)
    year, month = value.year + y, m + 1
    day = min(value.day, 28)
    return date(year, month, day)


def _generate(rng: random.Random) -> dict[str, list[tuple]]:
    rows: dict[str, list[tuple]] = {}

    # branches
    branches = [(i, name, city, region, iso(opened)) for i, (name, city, region, opened) in enumerate(BRANCHES, 1)]
    rows["branches"] = branches
    branch_opened = {b[0]: date.fromisoformat(b[4]) for b in branches}
    branch_city = {b[0]: b[2] for b in branches}
    new_branch_id = next(b[0] for b in branches if b[1] == NEW_BRANCH)
    account_branches = [b[0] for b in branches if b[0] != new_branch_id]
    cities = sorted({b[2] for b in branches if b[0] != new_branch_id}) + OTHER_CITIES

    # customers
    customers = []
    used_emails: set[str] = set()
    for cid in range(1, 401):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        email = None
        if rng.random() >= 0.08:
            base = f"{first}.{last}".lower()
            email = f"{base}@example.com"
            n = 2
            while email in used_emails:
                email = f"{base}{n}@example.com"
                n += 1
            used_emails.add(email)
        phone = None if rng.random() < 0.12 else f"555-{rng.randint(100, 999):03d}-{rng.randint(0, 9999):04d}"
        birth = rand_date(rng, date(1942, 1, 1), date(2005, 6, 30))
        city = rng.choices(cities, weights=[9 if c not in OTHER_CITIES else 3 for c in cities])[0]
        segment = rng.choices(["retail", "premier", "business"], weights=[68, 21, 11])[0]
        score = None if rng.random() < 0.1 else max(300, min(850, int(rng.gauss(690, 70))))
        joined = rand_date(rng, date(2016, 1, 1), date(2025, 11, 30))
        customers.append((cid, first, last, email, phone, iso(birth), city, segment, score, iso(joined)))
    rows["customers"] = customers

    # employees: CEO, regional directors, head-office staff, branch managers, branch staff
    employees: list[tuple] = []

    def hire(title: str, branch_id: int | None, manager_id: int | None, lo: date, salary: tuple[int, int]) -> int:
        eid = len(employees) + 1
        hired = rand_date(rng, lo, date(2025, 11, 15))
        pay = rng.randrange(salary[0], salary[1], 500)
        employees.append((eid, rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES), title, branch_id, manager_id,
                          iso(hired), pay))
        return eid

    ceo = hire("Chief Executive Officer", None, None, date(2006, 1, 1), (240000, 260000))
    directors = {region: hire("Regional Director", None, ceo, date(2008, 1, 1), (150000, 175000))
                 for region in ("North", "South", "East", "West")}
    for title in ("Risk Analyst", "Data Analyst", "Compliance Officer"):
        hire(title, None, ceo, date(2015, 1, 1), (78000, 105000))
    managers = {}
    for b in branches:
        lo = max(branch_opened[b[0]], date(2010, 1, 1)) if b[0] != new_branch_id else date(2025, 8, 1)
        managers[b[0]] = hire("Branch Manager", b[0], directors[b[3]], lo, (92000, 118000))
    staff_titles = ["Teller", "Teller", "Personal Banker", "Loan Officer"]
    officers: dict[int, list[int]] = {}
    remaining = 60 - len(employees)
    plan = [new_branch_id]  # one teller at the new branch
    while len(plan) < remaining:
        plan.append(account_branches[len(plan) % len(account_branches)])
    for i, bid in enumerate(plan):
        title = "Teller" if bid == new_branch_id else staff_titles[i % len(staff_titles)]
        lo = max(branch_opened[bid], date(2012, 1, 1)) if bid != new_branch_id else date(2025, 8, 1)
        pay = {"Teller": (38000, 52000), "Personal Banker": (55000, 76000), "Loan Officer": (62000, 88000)}[title]
        eid = hire(title, bid, managers[bid], lo, pay)
        if title == "Loan Officer":
            officers.setdefault(bid, []).append(eid)
    rows["employees"] = employees

    # accounts
    accounts: list[tuple] = []
    loans: list[tuple] = []
    acct_numbers: set[str] = set()
    type_weights = {
        "retail": [("checking", 16), ("savings", 30), ("credit", 34), ("loan", 20)],
        "premier": [("checking", 12), ("savings", 34), ("credit", 32), ("loan", 22)],
        "business": [("checking", 30), ("savings", 10), ("credit", 16), ("loan", 44)],
    }
    for cust in customers:
        cid, segment, joined, city = cust[0], cust[7], date.fromisoformat(cust[9]), cust[6]
        n_accounts = rng.choices([0, 1, 2, 3, 4], weights=[5, 44, 34, 13, 4])[0]
        local = [b for b in account_branches if branch_city[b] == city]
        for k in range(n_accounts):
            if k == 0:
                acct_type = rng.choices(["checking", "savings", "credit", "loan"], weights=[72, 12, 10, 6])[0]
            else:
                kinds, weights = zip(*type_weights[segment], strict=True)
                acct_type = rng.choices(kinds, weights=weights)[0]
            bid = rng.choice(local) if local and rng.random() < 0.85 else rng.choice(account_branches)
            lo = max(joined, branch_opened[bid])
            if lo > date(2025, 12, 20):
                continue
            if k == 0:  # the first account is opened when the customer joins
                opened = min(rand_date(rng, lo, lo + timedelta(days=45)), date(2025, 12, 20))
            else:
                opened = rand_date(rng, lo, date(2025, 12, 20))
            closed = None
            status = "active"
            roll = rng.random()
            if roll < (0.18 if acct_type == "loan" else 0.10) and (SNAPSHOT - opened).days > 120:
                closed = rand_date(rng, opened + timedelta(days=90), SNAPSHOT)
                status = "closed"
            elif roll < 0.13:
                status = "frozen"
            credit_limit = None
            if acct_type == "checking":
                balance = rng.lognormvariate(7.6, 0.9)
            elif acct_type == "savings":
                balance = rng.lognormvariate(8.9, 1.1)
            elif acct_type == "credit":
                credit_limit = float(rng.choice([1000, 2500, 5000, 7500, 10000, 15000, 20000]))
                balance = credit_limit * rng.random() * (0.9 if status != "frozen" else 1.0)
            else:
                balance = 0.0  # set from the loan below
            aid = len(accounts) + 1
            number = f"{rng.randint(10000000, 99999999)}"
            while number in acct_numbers:
                number = f"{rng.randint(10000000, 99999999)}"
            acct_numbers.add(number)
            if acct_type == "loan":
                loan_type = "business" if segment == "business" else rng.choices(
                    ["mortgage", "auto", "personal"], weights=[30, 40, 30])[0]
                principal, terms = {
                    "mortgage": ((120000, 650000), [180, 240, 360]),
                    "auto": ((8000, 55000), [36, 48, 60, 72]),
                    "personal": ((2000, 30000), [12, 24, 36, 60]),
                    "business": ((25000, 400000), [36, 60, 84, 120]),
                }[loan_type]
                amount = float(rng.randrange(principal[0], principal[1], 500))
                rate = {"mortgage": 4.1, "auto": 6.2, "personal": 9.8, "business": 7.4}[loan_type]
                rate = round(rate + rng.uniform(-1.2, 2.4), 2)
                term = rng.choice(terms)
                matured = _add_months(opened, term)
                if matured <= SNAPSHOT and (closed is None or matured < closed):
                    status, closed = "closed", matured  # repaid at maturity
                if status == "closed":
                    loan_status = "paid_off"
                    balance = 0.0
                else:
                    loan_status = rng.choices(["current", "late", "defaulted"], weights=[82, 12, 6])[0]
                    if status == "frozen":
                        loan_status = "defaulted"
                    elapsed = max(0, (SNAPSHOT - opened).days // 30)
                    balance = amount * max(0.05, 1 - elapsed / term) * rng.uniform(0.95, 1.02)
                officer = rng.choice(officers.get(bid) or [managers[bid]])
                loans.append((len(loans) + 1, aid, loan_type, amount, rate, term, iso(opened), loan_status, officer))
            if status == "closed":
                balance = 0.0
            accounts.append((aid, number, cid, bid, acct_type, iso(opened), iso(closed) if closed else None, status,
                             money(balance), credit_limit))
    rows["accounts"] = accounts
    rows["loans"] = loans

    # products
    products = []
    for category, items in PRODUCTS.items():
        for name, price in items:
            products.append((len(products) + 1, name, category, price))
    rows["products"] = products
    sellable = [p for p in products if p[1] not in UNSOLD]
    popularity = [rng.uniform(0.3, 3.0) for _ in sellable]

    # transactions
    loan_by_account = {ln[1]: ln for ln in loans}
    txns: list[tuple] = []
    for acct in accounts:
        aid, acct_type, opened, closed, status = acct[0], acct[4], acct[5], acct[6], acct[7]
        lo = max(date.fromisoformat(opened), DATA_START)
        hi = min(date.fromisoformat(closed), SNAPSHOT) if closed else SNAPSHOT
        if lo > hi:
            continue
        if acct_type == "loan":
            loan = loan_by_account[aid]
            principal, rate, term = loan[3], loan[4], loan[5]
            r = rate / 1200
            instalment = money(principal * r / (1 - (1 + r) ** -term))
            start = date.fromisoformat(loan[6])
            for k in range(1, term + 1):
                due = _add_months(start, k)
                if due > hi:
                    break
                if due < DATA_START:
                    continue
                if loan[7] in ("late", "defaulted") and rng.random() < 0.25:
                    continue  # missed instalment
                paid = due + timedelta(days=rng.randint(0, 6 if loan[7] == "current" else 25))
                if paid > hi:
                    break
                ch = _pick(rng, CHANNELS["payment"])
                txns.append((aid, paid, instalment, "payment", ch, None, None, None, "Loan instalment"))
            continue
        if acct_type == "savings" and rng.random() < 0.06:
            continue  # dormant savings account: no activity in the data window
        months = max(1, (hi - lo).days / 30.4)
        n = int(months * MONTHLY_RATE[acct_type] * rng.uniform(0.4, 1.6))
        if status == "frozen":
            n = n // 2
        kinds, weights = zip(*MIX[acct_type], strict=True)
        for _ in range(n):
            kind = rng.choices(kinds, weights=weights)[0]
            day = rand_date(rng, lo, hi)
            merchant = product_id = quantity = None
            channel = None
            if kind in ("purchase", "refund"):
                channel = _pick(rng, CHANNELS["purchase"])
                if rng.random() < 0.45:
                    prod = rng.choices(sellable, weights=popularity)[0]
                    product_id = prod[0]
                    quantity = 1 if prod[2] in ("electronics", "home", "travel") else rng.choice([1, 1, 2, 3])
                    merchant = rng.choice(MERCHANTS_BY_CATEGORY[prod[2]])
                    value = prod[3] * quantity
                    desc = f"{'Purchase' if kind == 'purchase' else 'Refund'} - {merchant} - {prod[1]}"
                else:
                    merchant = rng.choice(OTHER_MERCHANTS)
                    value = rng.lognormvariate(3.4, 0.8)
                    desc = f"{'Card purchase' if kind == 'purchase' else 'Refund'} - {merchant}"
                amount = -value if kind == "purchase" else value
            elif kind == "deposit":
                channel = _pick(rng, CHANNELS["deposit"])
                if channel == "online":
                    amount, desc = rng.uniform(1200, 4800), "Payroll deposit"
                else:
                    amount = rng.uniform(50, 2500) if acct_type == "checking" else rng.uniform(100, 5000)
                    desc = {"branch": "Cash deposit at branch", "atm": "ATM cash deposit",
                            "mobile": "Mobile cheque deposit"}[channel]
            elif kind == "withdrawal":
                channel = _pick(rng, CHANNELS["withdrawal"])
                amount = -float(rng.randrange(20, 420, 20)) if channel == "atm" else -rng.uniform(100, 2000)
                desc = "ATM withdrawal" if channel == "atm" else "Cash withdrawal at branch"
            elif kind == "transfer":
                channel = _pick(rng, CHANNELS["transfer"])
                outgoing = rng.random() < (0.6 if acct_type == "checking" else 0.45)
                amount = -rng.uniform(25, 1500) if outgoing else rng.uniform(25, 1500)
                desc = "Transfer out" if outgoing else "Transfer in"
            elif kind == "payment":
                channel = _pick(rng, CHANNELS["payment"])
                amount, desc = rng.uniform(50, 1800), "Card payment received"
            elif kind == "fee":
                if acct_type == "credit":
                    amount, desc = -rng.choice([25.0, 35.0, 39.0]), "Late payment fee"
                else:
                    amount, desc = rng.choice([(-5.0, "Monthly maintenance fee"), (-2.5, "ATM fee"),
                                               (-35.0, "Overdraft fee")])
            else:  # interest
                if acct_type == "savings":
                    amount, desc = rng.uniform(0.5, 60), "Interest credit"
                else:
                    amount, desc = -rng.uniform(5, 90), "Interest charge"
            txns.append((aid, day, money(amount), kind, channel, merchant, product_id, quantity, desc))
    txns.sort(key=lambda t: (t[1], t[0], t[3], t[2]))
    rows["transaction_history"] = [(i, t[0], iso(t[1]), *t[2:]) for i, t in enumerate(txns, 1)]
    return rows


INSERT_ORDER = ["branches", "customers", "employees", "accounts", "loans", "products", "transaction_history"]


def build_bank_database(out: Path, seed: int = DEFAULT_SEED) -> Path:
    """Generate the bank database at ``out`` (replaced atomically) and return its path."""
    return write_database(out, SCHEMA, INSERT_ORDER, _generate(random.Random(seed)))


def main(argv: list[str] | None = None) -> int:
    return sqlite_build.main(argv, prog="python -m pipelines.build_bank", doc=__doc__ or "",
                             default_out=Path("datasets/bank/bank.sqlite"), default_seed=DEFAULT_SEED,
                             build=build_bank_database, tables=INSERT_ORDER)


if __name__ == "__main__":
    sys.exit(main())
