"""Fixtures shared by the guest-running tests (tests/facts has its own conftest)."""
import pytest

from tests.guestbackends import BACKENDS, require


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    """The name of each usable backend ("hw", "sim"), warmed up with a tiny guest."""
    return require(request.param)
