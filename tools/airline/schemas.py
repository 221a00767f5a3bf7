"""Argument schemas and the registry of the airline tools (the τ²-bench set, without ``think``).

Every args model forbids extra fields, so a forged argument such as ``insurance`` on a flight
change or ``amount`` on a bag update fails validation instead of being silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from graph.domain import openai_tool_schemas, validate_tool_args
from tools.airline import pricing
from tools.airline.errors import ToolError

__all__ = [
    "AIRLINE_TOOLS",
    "BookReservationArgs",
    "CalculateArgs",
    "Cabin",
    "CancelReservationArgs",
    "FlightInfo",
    "FlightType",
    "GetFlightStatusArgs",
    "GetReservationDetailsArgs",
    "GetUserDetailsArgs",
    "Insurance",
    "ListAllAirportsArgs",
    "Passenger",
    "Payment",
    "READ_TOOLS",
    "SearchDirectFlightArgs",
    "SearchOnestopFlightArgs",
    "SendCertificateArgs",
    "ToolSpec",
    "TransferToHumanAgentsArgs",
    "UpdateReservationBaggagesArgs",
    "UpdateReservationFlightsArgs",
    "UpdateReservationPassengersArgs",
    "WRITE_TOOLS",
    "langchain_tools",
    "parse_args",
]

Cabin = Literal["basic_economy", "economy", "business"]
FlightType = Literal["one_way", "round_trip"]
Insurance = Literal["yes", "no"]

_DATE = r"^\d{4}-\d{2}-\d{2}$"
Id = Annotated[str, Field(min_length=1, max_length=64)]
Airport = Annotated[str, Field(min_length=3, max_length=3, description="IATA code, such as 'JFK'.")]
Day = Annotated[str, Field(pattern=_DATE, description="Date in the format 'YYYY-MM-DD'.")]
Name = Annotated[str, Field(min_length=1, max_length=100)]


def _cents(value: Any) -> Any:
    """Round a money amount to cents exactly as the backend does (``pricing.money``).

    Conditions then see the amount that will be written: 199.995 is 200.00 for the policy
    too, not a float just under a threshold. NaN and infinities are refused here.
    """
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    if not isinstance(value, int | float | str):
        return value  # pydantic reports the type error
    try:
        return float(pricing.money(value))
    except ToolError:
        raise ValueError("must be a finite number") from None


Money = Annotated[float, BeforeValidator(_cents), Field(allow_inf_nan=False)]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FlightInfo(_Args):
    """One flight segment: a flight number on a date."""

    flight_number: Id = Field(description="Flight number, such as 'HAT001'.")
    date: Day


class Passenger(_Args):
    """A passenger's name and date of birth."""

    first_name: Name = Field(description="First name, such as 'Noah'.")
    last_name: Name = Field(description="Last name, such as 'Brown'.")
    dob: Day = Field(description="Date of birth in the format 'YYYY-MM-DD'.")


class Payment(_Args):
    """An amount charged to one payment method from the user's profile."""

    payment_id: Id = Field(
        description="A payment method id from the user's profile, such as 'credit_card_7815826'."
    )
    amount: Money = Field(gt=0, description="Amount in USD to charge to this payment method.")


class GetUserDetailsArgs(_Args):
    """Arguments of ``get_user_details``."""

    user_id: Id = Field(description="The user id, such as 'sara_doe_496'.")


class GetReservationDetailsArgs(_Args):
    """Arguments of ``get_reservation_details``."""

    reservation_id: Id = Field(description="The reservation id, such as '8JX2WO'.")


class ListAllAirportsArgs(_Args):
    """``list_all_airports`` takes no arguments."""


class SearchDirectFlightArgs(_Args):
    """Arguments of ``search_direct_flight``."""

    origin: Airport
    destination: Airport
    date: Day


class SearchOnestopFlightArgs(_Args):
    """Arguments of ``search_onestop_flight``."""

    origin: Airport
    destination: Airport
    date: Day


class GetFlightStatusArgs(_Args):
    """Arguments of ``get_flight_status``."""

    flight_number: Id = Field(description="Flight number, such as 'HAT001'.")
    date: Day


class CalculateArgs(_Args):
    """Arguments of ``calculate``."""

    expression: str = Field(
        min_length=1,
        max_length=200,
        description="Arithmetic with numbers, + - * / ( ) and spaces, such as '2 * (3 + 4)'.",
    )


class TransferToHumanAgentsArgs(_Args):
    """Arguments of ``transfer_to_human_agents``."""

    summary: str = Field(max_length=2000, description="A summary of the user's issue.")


class BookReservationArgs(_Args):
    """Arguments of ``book_reservation``."""

    user_id: Id = Field(description="The user id, such as 'sara_doe_496'.")
    origin: Airport
    destination: Airport
    flight_type: FlightType
    cabin: Cabin
    flights: list[FlightInfo] = Field(
        min_length=1, description="Every flight segment of the trip, in order."
    )
    passengers: list[Passenger] = Field(min_length=1)
    payment_methods: list[Payment] = Field(
        min_length=1, description="Payment methods and amounts; the amounts must add up to the total."
    )
    total_baggages: int = Field(ge=0, le=100, description="Total number of checked bags.")
    nonfree_baggages: int = Field(ge=0, le=100, description="Number of paid checked bags.")
    insurance: Insurance


class CancelReservationArgs(_Args):
    """Arguments of ``cancel_reservation``."""

    reservation_id: Id = Field(description="The reservation id, such as 'ZFA04Y'.")


class UpdateReservationFlightsArgs(_Args):
    """Arguments of ``update_reservation_flights``."""

    reservation_id: Id = Field(description="The reservation id, such as 'ZFA04Y'.")
    cabin: Cabin
    flights: list[FlightInfo] = Field(
        min_length=1,
        description="The whole new itinerary, including segments that do not change.",
    )
    payment_id: Id = Field(
        description="A gift card or credit card id from the user's profile, for the price "
        "difference (charge or refund)."
    )


class UpdateReservationBaggagesArgs(_Args):
    """Arguments of ``update_reservation_baggages``."""

    reservation_id: Id = Field(description="The reservation id, such as 'ZFA04Y'.")
    total_baggages: int = Field(ge=0, le=100, description="The new total number of checked bags.")
    nonfree_baggages: int = Field(ge=0, le=100, description="The new number of paid checked bags.")
    payment_id: Id = Field(description="A gift card or credit card id from the user's profile.")


class UpdateReservationPassengersArgs(_Args):
    """Arguments of ``update_reservation_passengers``."""

    reservation_id: Id = Field(description="The reservation id, such as 'ZFA04Y'.")
    passengers: list[Passenger] = Field(
        min_length=1, description="The full new passenger list (same number of passengers)."
    )


class SendCertificateArgs(_Args):
    """Arguments of ``send_certificate``."""

    user_id: Id = Field(description="The user id, such as 'sara_doe_496'.")
    amount: Money = Field(gt=0, le=10000, description="Certificate amount in USD.")


@dataclass(frozen=True, kw_only=True)
class ToolSpec:
    """One tool as the model sees it: name, description, argument schema, whether it writes."""

    name: str
    description: str
    args_schema: type[BaseModel]
    write: bool


def _spec(name: str, description: str, args_schema: type[BaseModel], *, write: bool) -> ToolSpec:
    return ToolSpec(name=name, description=description, args_schema=args_schema, write=write)


AIRLINE_TOOLS: dict[str, ToolSpec] = {
    s.name: s
    for s in (
        _spec(
            "get_user_details",
            "Get the details of a user: profile, saved payment methods (with gift card and "
            "certificate balances), membership level and reservation ids.",
            GetUserDetailsArgs,
            write=False,
        ),
        _spec(
            "get_reservation_details",
            "Get the details of a reservation: trip, cabin, flights with prices paid, "
            "passengers, payment history, bags and insurance.",
            GetReservationDetailsArgs,
            write=False,
        ),
        _spec(
            "list_all_airports",
            "List every airport the airline serves, as IATA codes with city names.",
            ListAllAirportsArgs,
            write=False,
        ),
        _spec(
            "search_direct_flight",
            "Search non-stop flights between two airports on a date that can still be booked, "
            "with seats left and the current price per cabin.",
            SearchDirectFlightArgs,
            write=False,
        ),
        _spec(
            "search_onestop_flight",
            "Search one-stop connections between two airports leaving on a date; both legs "
            "can still be booked.",
            SearchOnestopFlightArgs,
            write=False,
        ),
        _spec(
            "get_flight_status",
            "Get the status of a flight on a date: available, on time, delayed, flying, "
            "landed or cancelled.",
            GetFlightStatusArgs,
            write=False,
        ),
        _spec(
            "calculate",
            "Calculate the result of an arithmetic expression (numbers, + - * / and "
            "parentheses); the result is rounded to 2 decimals.",
            CalculateArgs,
            write=False,
        ),
        _spec(
            "transfer_to_human_agents",
            "Transfer the user to a human agent, with a summary of the issue. Only when the "
            "user explicitly asks for a human, or the request cannot be handled with the "
            "available tools.",
            TransferToHumanAgentsArgs,
            write=False,
        ),
        _spec(
            "book_reservation",
            "Book a reservation for the user: flights, passengers, cabin, bags, insurance and "
            "payment methods from the user's profile. Needs the user's explicit confirmation.",
            BookReservationArgs,
            write=True,
        ),
        _spec(
            "cancel_reservation",
            "Cancel the whole reservation and refund every payment to its original method. "
            "Needs the user's explicit confirmation.",
            CancelReservationArgs,
            write=True,
        ),
        _spec(
            "update_reservation_flights",
            "Replace the flights (and optionally the cabin) of a reservation. Give the whole "
            "new itinerary, including segments that stay the same. The price difference is "
            "charged or refunded to one gift card or credit card. Needs the user's explicit "
            "confirmation.",
            UpdateReservationFlightsArgs,
            write=True,
        ),
        _spec(
            "update_reservation_baggages",
            "Set the number of checked bags of a reservation; each extra paid bag costs USD 50, "
            "charged to one gift card or credit card. Needs the user's explicit confirmation.",
            UpdateReservationBaggagesArgs,
            write=True,
        ),
        _spec(
            "update_reservation_passengers",
            "Replace the passenger details of a reservation; the number of passengers cannot "
            "change. Needs the user's explicit confirmation.",
            UpdateReservationPassengersArgs,
            write=True,
        ),
        _spec(
            "send_certificate",
            "Send the user a travel certificate of the given amount as compensation. Only for "
            "the cases the policy allows.",
            SendCertificateArgs,
            write=True,
        ),
    )
}

READ_TOOLS: frozenset[str] = frozenset(n for n, s in AIRLINE_TOOLS.items() if not s.write)
WRITE_TOOLS: frozenset[str] = frozenset(n for n, s in AIRLINE_TOOLS.items() if s.write)


def parse_args(tool: str, args: Mapping[str, Any] | None) -> BaseModel:
    """Validate ``args`` for ``tool``.

    Raises:
        ToolError: If the tool is unknown or the arguments do not match its schema.
    """
    return validate_tool_args(AIRLINE_TOOLS, tool, args, error_type=ToolError)


def langchain_tools() -> list[dict[str, Any]]:
    """Return the OpenAI tool schemas of every airline tool, for ``model.bind_tools``."""
    return openai_tool_schemas(AIRLINE_TOOLS)
