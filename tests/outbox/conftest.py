from tests.approvals.conftest import parked  # noqa: F401 - the parked-approval fixture, shared
