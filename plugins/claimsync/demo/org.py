"""The demo company: its department tree and its employees, in OA and mirrored in expense.

OA (hrmdepartment, hrmresource) is the system of record; expense (department, staff)
mirrors it with a few differences an org sync would fix: a new department and its
hires not copied yet, a leaver still active in expense, a renamed employee, a transfer.
None of these is a reconciliation exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import numpy.typing as npt

from claimsync.demo import vocab

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def id_card_number(region: str, born: date, sequence: int) -> str:
    """A well-formed 18-character 身份证号 (GB 11643 check character)."""
    body = f"{region}{born:%Y%m%d}{sequence:03d}"
    total = sum(int(ch) * w for ch, w in zip(body, _ID_WEIGHTS, strict=True))
    return body + _ID_CHECK[total % 11]


def _id_card_numbers(
    regions: npt.NDArray[np.int64], born: npt.NDArray[np.datetime64], sequence: npt.NDArray[np.int64], none: B
) -> list[str | None]:
    """Vectorised :func:`id_card_number`."""
    bodies = [
        f"{vocab.ID_REGIONS[r]}{str(b).replace('-', '')}{q:03d}"
        for r, b, q in zip(regions.tolist(), born.astype("datetime64[D]").tolist(), sequence.tolist(), strict=True)
    ]
    digits = np.frombuffer("".join(bodies).encode(), dtype=np.uint8).reshape(len(bodies), 17) - ord("0")
    checks = (digits.astype(np.int64) @ np.array(_ID_WEIGHTS, dtype=np.int64)) % 11
    return [
        None if none[i] else body + _ID_CHECK[c]
        for i, (body, c) in enumerate(zip(bodies, checks.tolist(), strict=True))
    ]


@dataclass
class Org:
    # departments (index = OA id - 1)
    dept_code: list[str]
    dept_name: list[str]
    dept_parent: I32  # index, -1 for the root
    dept_canceled: B
    dept_in_expense: B
    dept_changed: I64  # epoch seconds
    dept_manager: I32  # employee index
    # employees (index = OA id - 1)
    name: list[str]
    workcode: list[str]
    dept: I32
    status: npt.NDArray[np.int8]
    email: list[str | None]
    mobile: list[str | None]
    id_number: list[str | None]
    account: list[str]
    changed: I64
    in_staff: B
    staff_active: B
    staff_name: list[str]
    staff_dept: I32
    staff_changed: I64
    approver: I32  # who approves this employee's requests (their manager)
    finance: I32  # finance reviewers
    finance_head: int
    eligible: I32  # may file claims (in both systems)
    active: I32  # eligible and OA status <= 3
    inactive: I32  # eligible and OA status > 3

    @property
    def size(self) -> int:
        return len(self.workcode)


def build_org(rng: np.random.Generator, n_employees: int, *, before: int) -> Org:
    """Departments and ``n_employees`` people; every change time is at or before ``before``."""
    depts = list(vocab.DEPARTMENTS)
    n_teams = min(len(vocab.TEAM_PARENTS) * len(vocab.TEAM_NUMERALS), n_employees // 200)
    names = {code: name for code, name, _ in depts}
    for t in range(n_teams):
        head = vocab.TEAM_PARENTS[t % len(vocab.TEAM_PARENTS)]
        number = t // len(vocab.TEAM_PARENTS) + 1
        depts.append((f"{head}-{number:02d}", f"{names[head]}{vocab.TEAM_NUMERALS[number - 1]}组", head))
    index = {code: i for i, (code, _, _) in enumerate(depts)}
    n_dept = len(depts)
    parent = np.array([index[up] if up else -1 for _, _, up in depts], dtype=np.int32)
    has_children = np.zeros(n_dept, dtype=bool)
    has_children[parent[parent >= 0]] = True
    canceled = np.array([code == vocab.CANCELED_DEPARTMENT for code, _, _ in depts])
    new_dept = index[vocab.NEW_DEPARTMENT]
    in_expense = np.ones(n_dept, dtype=bool)
    in_expense[new_dept] = False

    weight = np.where(has_children, 0.3, 3.0)
    weight[[i for i, (code, _, _) in enumerate(depts) if code.startswith(("SAL", "KA", "SH", "GZ", "BJ"))]] *= 2
    weight[canceled] = 0.4
    weight[new_dept] = 0.0
    dept = rng.choice(n_dept, size=n_employees, p=weight / weight.sum()).astype(np.int32)
    status = rng.choice(8, size=n_employees, p=np.array(vocab.EMPLOYEE_STATUS_WEIGHTS)).astype(np.int8)
    status[canceled[dept]] = rng.choice(np.array([4, 5], dtype=np.int8), size=int(canceled[dept].sum()))

    # Fixed roles: the general manager, finance (reviewers and their head), one head per department.
    root = index[vocab.ROOT_DEPARTMENT]
    fin = index[vocab.FINANCE_DEPARTMENT]
    n_fin = max(2, min(40, n_employees // 300))
    dept[0], status[0] = root, 1
    dept[1 : 1 + n_fin] = fin
    status[1 : 1 + n_fin] = 1
    # Every OA status occurs, however small the company (people in 人力资源部).
    status[1 + n_fin : 9 + n_fin] = np.arange(8)
    dept[1 + n_fin : 9 + n_fin] = index["HR-01"]
    # New hires: in OA since yesterday, not yet in expense; the new department is all new hires.
    new_hire = rng.random(n_employees) < 0.005
    new_hire[: 9 + n_fin] = False
    new_hire &= ~canceled[dept]
    new_hire[-1] = True
    new_hire[-2] = n_employees > 2 * (1 + n_fin)
    dept[-1] = new_dept
    status[new_hire] = 0

    manager = np.full(n_dept, -1, dtype=np.int32)
    active_mask = (status <= 3) & ~new_hire
    for d in range(n_dept):
        members = np.flatnonzero((dept == d) & active_mask)
        if len(members):
            manager[d] = members[0]
    manager[new_dept] = n_employees - 1
    for d in range(n_dept):  # a department with no active head reports to its parent's
        up = d
        while manager[up] < 0 and parent[up] >= 0:
            up = int(parent[up])
        manager[d] = manager[up] if manager[up] >= 0 else 0
    approver = manager[dept].copy()
    own_head = approver == np.arange(n_employees)
    approver[own_head] = np.where(parent[dept[own_head]] >= 0, manager[np.maximum(parent[dept[own_head]], 0)], 1)
    approver[approver == np.arange(n_employees)] = 1  # the general manager's claims go to the finance head
    approver[1] = 0

    surnames = vocab.SURNAMES
    sur_w = np.array([w for _, _, w in surnames])
    sur = rng.choice(len(surnames), size=n_employees, p=sur_w / sur_w.sum())
    g1 = rng.integers(0, len(vocab.GIVEN_CHARS), size=n_employees)
    g2 = rng.integers(0, len(vocab.GIVEN_CHARS), size=n_employees)
    two = rng.random(n_employees) < 0.72
    full_names: list[str] = []
    emails: list[str | None] = []
    seen: dict[str, int] = {}
    no_email = rng.random(n_employees) < 0.04
    for i in range(n_employees):
        s_han, s_py, _ = surnames[sur[i]]
        c1, p1 = vocab.GIVEN_CHARS[g1[i]]
        c2, p2 = vocab.GIVEN_CHARS[g2[i]]
        given, given_py = (c1 + c2, p1 + p2) if two[i] else (c1, p1)
        full_names.append(s_han + given)
        local = f"{given_py}.{s_py}"
        count = seen.get(local, 0)
        seen[local] = count + 1
        emails.append(None if no_email[i] else f"{local}{count if count else ''}@{vocab.EMAIL_DOMAIN}")

    prefixes = rng.integers(0, len(vocab.MOBILE_PREFIXES), size=n_employees)
    tails = rng.integers(0, 10**8, size=n_employees)
    no_mobile = rng.random(n_employees) < 0.03
    mobiles: list[str | None] = [
        None if no_mobile[i] else f"{vocab.MOBILE_PREFIXES[prefixes[i]]}{tails[i]:08d}" for i in range(n_employees)
    ]
    regions = rng.integers(0, len(vocab.ID_REGIONS), size=n_employees)
    born = np.datetime64("1965-01-01") + rng.integers(0, 39 * 365, size=n_employees).astype("timedelta64[D]")
    sequence = rng.integers(0, 1000, size=n_employees)
    no_id = rng.random(n_employees) < 0.02
    id_numbers = _id_card_numbers(regions, born, sequence, no_id)
    card_prefix = rng.integers(0, len(vocab.BANK_CARD_PREFIXES), size=n_employees)
    card_len = np.where(rng.random(n_employees) < 0.8, 19, 16)
    card_body = rng.integers(0, 10**13, size=n_employees)
    accounts = [
        (vocab.BANK_CARD_PREFIXES[card_prefix[i]] + f"{card_body[i]:013d}")[: card_len[i]] for i in range(n_employees)
    ]

    year = 365 * 86400
    changed = before - rng.integers(0, year, size=n_employees)
    changed[new_hire] = before - rng.integers(3600, 2 * 86400, size=int(new_hire.sum()))
    in_staff = ~new_hire
    staff_active = status <= 3
    # An org sync is pending for a few people: left but still active in expense, renamed, transferred.
    leaver_still_active = (status == 5) & (rng.random(n_employees) < 0.05)
    staff_active[leaver_still_active] = True
    changed[leaver_still_active] = before - rng.integers(600, 3 * 86400, size=int(leaver_still_active.sum()))
    staff_name = list(full_names)
    renamed = np.flatnonzero(in_staff & (rng.random(n_employees) < 0.003))
    for r in renamed.tolist():
        staff_name[r] = full_names[r][:-1] + vocab.GIVEN_CHARS[(int(g1[r]) + 7) % len(vocab.GIVEN_CHARS)][0]
    staff_dept = dept.copy()
    moved = in_staff & (rng.random(n_employees) < 0.003) & (dept != fin)
    staff_dept[moved] = rng.choice(np.flatnonzero(in_expense & ~canceled), size=int(moved.sum()))
    changed[renamed] = before - rng.integers(600, 3 * 86400, size=len(renamed))
    changed[moved] = before - rng.integers(600, 3 * 86400, size=int(moved.sum()))
    staff_changed = np.where(leaver_still_active | moved, changed - rng.integers(5 * 86400, year), changed)
    staff_changed[renamed] = changed[renamed] - 40 * 86400

    dept_changed = before - rng.integers(30 * 86400, 3 * year, size=n_dept)
    dept_changed[new_dept] = before - 86400

    eligible_mask = in_staff.copy()
    ids = np.arange(n_employees, dtype=np.int32)
    finance = ids[1 : 1 + n_fin]
    return Org(
        dept_code=[code for code, _, _ in depts],
        dept_name=[name for _, name, _ in depts],
        dept_parent=parent,
        dept_canceled=canceled,
        dept_in_expense=in_expense,
        dept_changed=dept_changed.astype(np.int64),
        dept_manager=manager,
        name=full_names,
        workcode=[f"E{i + 1:06d}" for i in range(n_employees)],
        dept=dept,
        status=status,
        email=emails,
        mobile=mobiles,
        id_number=id_numbers,
        account=accounts,
        changed=changed.astype(np.int64),
        in_staff=in_staff,
        staff_active=staff_active,
        staff_name=staff_name,
        staff_dept=staff_dept.astype(np.int32),
        staff_changed=staff_changed.astype(np.int64),
        approver=approver.astype(np.int32),
        finance=finance,
        finance_head=1,
        eligible=ids[eligible_mask],
        active=ids[eligible_mask & (status <= 3)],
        inactive=ids[eligible_mask & (status > 3)],
    )
