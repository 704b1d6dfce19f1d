"""``Ship`` with the same step behind ``ctx.patched``: old histories still replay."""

from sagas import Domain
from tests.sagas_tests.support import Vault
from tests.sagas_tests.test_versioning import ship_v2

DOMAIN = Domain((Vault,), [ship_v2(with_patch=True)])
