"""The shared permission matrix: every admin endpoint is checked against the same five callers."""

from dataclasses import dataclass

from rest_framework.test import APIClient

from keyward.accounts.models import Account, Role
from keyward.tenancy.models import Org
from tests.factories import make_account, make_org, make_session_token

# Mutating calls that should fail go first, so the one allowed to succeed runs against clean state.
CALLER_ORDER = ("anonymous", "other_org", "viewer", "admin", "owner")


@dataclass
class Callers:
    """An org with a viewer, an admin and an owner, plus the owner of a second, unrelated org."""

    org: Org
    viewer: Account
    admin: Account
    owner: Account
    other_org: Account

    def client(self, who: str) -> APIClient:
        client = APIClient()
        if who != "anonymous":
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_session_token(getattr(self, who))}")
        return client


def make_callers() -> Callers:
    org = make_org("Matrix Org")
    return Callers(
        org=org,
        viewer=make_account(org, Role.VIEWER),
        admin=make_account(org, Role.ADMIN),
        owner=make_account(org, Role.OWNER),
        other_org=make_account(make_org("Other Org"), Role.OWNER),
    )


def assert_permission_matrix(callers: Callers, method: str, path: str, expected: dict[str, int], data=None) -> dict:
    """Call `path` as each caller and assert the status each gets; returns the responses by caller.

    `expected` must name all five callers, so no endpoint is checked for only the happy path.
    `data` may be a function of the caller's name, for creates that must not collide with each other.
    """
    assert set(expected) == set(CALLER_ORDER), f"expected must cover {CALLER_ORDER}"
    responses, wrong = {}, []
    for who in CALLER_ORDER:
        body = data(who) if callable(data) else data
        response = getattr(callers.client(who), method.lower())(path, data=body, format="json")
        responses[who] = response
        if response.status_code != expected[who]:
            wrong.append(f"{who}: expected {expected[who]}, got {response.status_code} {response.content[:200]!r}")
    assert not wrong, f"{method} {path}\n" + "\n".join(wrong)
    return responses
