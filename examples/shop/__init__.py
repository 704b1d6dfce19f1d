"""The shop: accounts, inventory items and carts (and, with the saga layer, orders and
their fulfilment activity).

Read ``accounts.py`` first; every entity follows the same shape: a state model, its
events, command handlers that decide, and ``@apply`` methods that change the state.
"""

from examples.shop.accounts import Account, AccountState
from examples.shop.carts import Cart, CartState
from examples.shop.inventory import InventoryItem, InventoryState
from examples.shop.orders import OrderInput, OrderLine, OrderResult, order_saga
from examples.shop.refunds import RefundInput, RefundResult, refund
from examples.shop.reports import LowStockReport, StockLevel
from examples.shop.shipping import CARRIER, Shipment, ship_order
from sagas import Domain

ENTITIES = (Account, InventoryItem, Cart)
WORKFLOWS = (order_saga, refund)
ACTIVITIES = (ship_order,)
DOMAIN = Domain(ENTITIES, WORKFLOWS, activities=ACTIVITIES)

__all__ = [
    "ACTIVITIES",
    "CARRIER",
    "DOMAIN",
    "ENTITIES",
    "WORKFLOWS",
    "Account",
    "AccountState",
    "Cart",
    "CartState",
    "InventoryItem",
    "InventoryState",
    "LowStockReport",
    "OrderInput",
    "OrderLine",
    "OrderResult",
    "RefundInput",
    "RefundResult",
    "Shipment",
    "StockLevel",
    "order_saga",
    "refund",
    "ship_order",
]
