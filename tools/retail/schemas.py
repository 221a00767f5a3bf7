"""Argument schemas and the registry of the retail tools (the τ²-bench retail set).

Every args model forbids extra fields, so a forged argument (an ``amount`` on a return, a
``user_id`` on an order change) fails validation instead of being silently ignored. No tool
takes a money amount: every amount is computed by the backend from the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from graph.domain import openai_tool_schemas, validate_tool_args
from tools.retail.errors import ToolError

__all__ = [
    "CANCEL_REASONS",
    "READ_TOOLS",
    "RETAIL_TOOLS",
    "WRITE_TOOLS",
    "CalculateArgs",
    "CancelPendingOrderArgs",
    "ExchangeDeliveredOrderItemsArgs",
    "FindUserIdByEmailArgs",
    "FindUserIdByNameZipArgs",
    "GetItemDetailsArgs",
    "GetOrderDetailsArgs",
    "GetProductDetailsArgs",
    "GetUserDetailsArgs",
    "ListAllProductTypesArgs",
    "ModifyPendingOrderAddressArgs",
    "ModifyPendingOrderItemsArgs",
    "ModifyPendingOrderPaymentArgs",
    "ModifyUserAddressArgs",
    "ReturnDeliveredOrderItemsArgs",
    "ToolSpec",
    "TransferToHumanAgentsArgs",
    "langchain_tools",
    "parse_args",
]

CANCEL_REASONS = ("no longer needed", "ordered by mistake")

OrderId = Annotated[str, Field(pattern=r"^#W\d{7}$",
                               description="The order id, such as '#W0000000' (with the '#').")]
ItemId = Annotated[str, Field(pattern=r"^\d{10}$", description="An item id, such as '1008292230'.")]
ProductId = Annotated[str, Field(pattern=r"^\d{10}$",
                                 description="A product id, such as '6086499569' (not an item id).")]
UserId = Annotated[str, Field(min_length=1, max_length=64, description="The user id, such as 'sara_doe_4966'.")]
PaymentId = Annotated[str, Field(
    min_length=1, max_length=64,
    description="A payment method id from the user's profile, such as 'gift_card_0000000' or "
    "'credit_card_0000000'.",
)]
Text = Annotated[str, Field(max_length=200)]
Line = Annotated[str, Field(min_length=1, max_length=200)]
ItemList = Annotated[list[ItemId], Field(min_length=1, max_length=20)]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Address(_Args):
    address1: Line = Field(description="The first line of the address, such as '123 Main St'.")
    address2: Text = Field(description="The second line of the address, such as 'Apt 1' or ''.")
    city: Line = Field(description="The city, such as 'San Francisco'.")
    state: Line = Field(description="The state, such as 'CA'.")
    country: Line = Field(description="The country, such as 'USA'.")
    zip: Annotated[str, Field(min_length=1, max_length=20)] = Field(description="The zip code, such as '12345'.")


class CalculateArgs(_Args):
    """Arguments of ``calculate``."""

    expression: str = Field(min_length=1, max_length=200,
                            description="Arithmetic with numbers, + - * / ( ) and spaces, such as '2 + 2'.")


class FindUserIdByEmailArgs(_Args):
    """Arguments of ``find_user_id_by_email``."""

    email: Annotated[str, Field(min_length=3, max_length=254)] = Field(
        description="The e-mail of the user, such as 'something@example.com'.")


class FindUserIdByNameZipArgs(_Args):
    """Arguments of ``find_user_id_by_name_zip``."""

    first_name: Line = Field(description="The first name of the customer, such as 'John'.")
    last_name: Line = Field(description="The last name of the customer, such as 'Doe'.")
    zip: Annotated[str, Field(min_length=1, max_length=20)] = Field(description="The zip code, such as '12345'.")


class GetUserDetailsArgs(_Args):
    """Arguments of ``get_user_details``."""

    user_id: UserId


class GetOrderDetailsArgs(_Args):
    """Arguments of ``get_order_details``."""

    order_id: OrderId


class GetProductDetailsArgs(_Args):
    """Arguments of ``get_product_details``."""

    product_id: ProductId


class GetItemDetailsArgs(_Args):
    """Arguments of ``get_item_details``."""

    item_id: ItemId


class ListAllProductTypesArgs(_Args):
    """``list_all_product_types`` takes no arguments."""


class TransferToHumanAgentsArgs(_Args):
    """Arguments of ``transfer_to_human_agents``."""

    summary: str = Field(max_length=2000, description="A summary of the user's issue.")


class CancelPendingOrderArgs(_Args):
    """Arguments of ``cancel_pending_order``."""

    order_id: OrderId
    reason: Literal["no longer needed", "ordered by mistake"] = Field(
        description="Why the customer cancels: 'no longer needed' or 'ordered by mistake'.")


class ModifyPendingOrderAddressArgs(_Address):
    """Arguments of ``modify_pending_order_address``."""

    order_id: OrderId


class ModifyPendingOrderItemsArgs(_Args):
    """Arguments of ``modify_pending_order_items``."""

    order_id: OrderId
    item_ids: ItemList = Field(description="The item ids to change (an id may repeat).")
    new_item_ids: ItemList = Field(
        description="The new item ids, position by position: each one another option of the same product.")
    payment_method_id: PaymentId


class ModifyPendingOrderPaymentArgs(_Args):
    """Arguments of ``modify_pending_order_payment``."""

    order_id: OrderId
    payment_method_id: PaymentId


class ModifyUserAddressArgs(_Address):
    """Arguments of ``modify_user_address``."""

    user_id: UserId


class ReturnDeliveredOrderItemsArgs(_Args):
    """Arguments of ``return_delivered_order_items``."""

    order_id: OrderId
    item_ids: ItemList = Field(description="The item ids to return (an id may repeat).")
    payment_method_id: PaymentId = Field(
        description="Where the refund goes: the order's original payment method or a gift card of the user.")


class ExchangeDeliveredOrderItemsArgs(_Args):
    """Arguments of ``exchange_delivered_order_items``."""

    order_id: OrderId
    item_ids: ItemList = Field(description="The item ids to exchange (an id may repeat).")
    new_item_ids: ItemList = Field(
        description="The new item ids, position by position: each one another option of the same product.")
    payment_method_id: PaymentId


@dataclass(frozen=True, kw_only=True)
class ToolSpec:
    """One tool as the model sees it: name, description, argument schema, whether it writes."""

    name: str
    description: str
    args_schema: type[BaseModel]
    write: bool


def _spec(name: str, description: str, args_schema: type[BaseModel], *, write: bool) -> ToolSpec:
    return ToolSpec(name=name, description=description, args_schema=args_schema, write=write)


_CONFIRM = " Needs the customer's explicit confirmation."

RETAIL_TOOLS: dict[str, ToolSpec] = {
    s.name: s
    for s in (
        _spec("find_user_id_by_email", "Find the user id of the signed-in customer by their e-mail.",
              FindUserIdByEmailArgs, write=False),
        _spec("find_user_id_by_name_zip",
              "Find the user id of the signed-in customer by first name, last name and zip code "
              "(when the e-mail is not known).", FindUserIdByNameZipArgs, write=False),
        _spec("get_user_details", "Get the customer's profile: name, address, e-mail, payment methods "
              "(with gift card balances) and order ids.", GetUserDetailsArgs, write=False),
        _spec("get_order_details", "Get the status and details of an order: items, address, "
              "fulfilments and payment history.", GetOrderDetailsArgs, write=False),
        _spec("get_product_details", "Get a product type and all its variant items, with options, "
              "price and availability.", GetProductDetailsArgs, write=False),
        _spec("get_item_details", "Get one variant item: its options, price and availability.",
              GetItemDetailsArgs, write=False),
        _spec("list_all_product_types", "List the name and product id of the store's 50 product types.",
              ListAllProductTypesArgs, write=False),
        _spec("calculate", "Calculate an arithmetic expression (numbers, + - * / and parentheses); "
              "the result is rounded to 2 decimals.", CalculateArgs, write=False),
        _spec("transfer_to_human_agents", "Transfer the customer to a human agent with a summary of "
              "the issue. Only when the customer asks for a human, or the request cannot be handled "
              "with the available tools.", TransferToHumanAgentsArgs, write=False),
        _spec("cancel_pending_order", "Cancel a pending order; the payment is refunded to its original "
              "method (a gift card at once, otherwise in 5 to 7 business days)." + _CONFIRM,
              CancelPendingOrderArgs, write=True),
        _spec("modify_pending_order_address", "Change the shipping address of a pending order." + _CONFIRM,
              ModifyPendingOrderAddressArgs, write=True),
        _spec("modify_pending_order_items", "Change items of a pending order to other options of the "
              "same products; the price difference is paid or refunded with one payment method. Can "
              "be done once per order: collect every item first." + _CONFIRM,
              ModifyPendingOrderItemsArgs, write=True),
        _spec("modify_pending_order_payment", "Pay a pending order with another payment method of the "
              "customer; the original one is refunded." + _CONFIRM,
              ModifyPendingOrderPaymentArgs, write=True),
        _spec("modify_user_address", "Change the customer's default address." + _CONFIRM,
              ModifyUserAddressArgs, write=True),
        _spec("return_delivered_order_items", "Return items of a delivered order; the refund goes to the "
              "original payment method or a gift card of the customer once the items are received."
              + _CONFIRM, ReturnDeliveredOrderItemsArgs, write=True),
        _spec("exchange_delivered_order_items", "Exchange items of a delivered order for other options of "
              "the same products; the price difference is paid or refunded with one payment method. "
              "Can be done once per order: collect every item first." + _CONFIRM,
              ExchangeDeliveredOrderItemsArgs, write=True),
    )
}

READ_TOOLS: frozenset[str] = frozenset(n for n, s in RETAIL_TOOLS.items() if not s.write)
WRITE_TOOLS: frozenset[str] = frozenset(n for n, s in RETAIL_TOOLS.items() if s.write)


def parse_args(tool: str, args: Mapping[str, Any] | None) -> BaseModel:
    """Validate ``args`` for ``tool``.

    Raises:
        ToolError: If the tool is unknown or the arguments do not match its schema.
    """
    return validate_tool_args(RETAIL_TOOLS, tool, args, error_type=ToolError)


def langchain_tools() -> list[dict[str, Any]]:
    """Return the OpenAI tool schemas of every retail tool, for ``model.bind_tools``."""
    return openai_tool_schemas(RETAIL_TOOLS)
