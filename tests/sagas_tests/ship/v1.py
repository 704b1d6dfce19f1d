"""The first deployment of ``Ship``."""

from sagas import Domain
from tests.sagas_tests.support import Vault
from tests.sagas_tests.test_versioning import ship_v1

DOMAIN = Domain((Vault,), [ship_v1()])
