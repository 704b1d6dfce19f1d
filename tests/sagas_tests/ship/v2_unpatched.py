"""``Ship`` with a step added before its sleep, without ``ctx.patched``: old histories diverge."""

from sagas import Domain
from tests.sagas_tests.support import Vault
from tests.sagas_tests.test_versioning import ship_v2

DOMAIN = Domain((Vault,), [ship_v2(with_patch=False)])
