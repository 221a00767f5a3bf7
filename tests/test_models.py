"""Tests for nodes.model: the scripted model, the offline planner and the model factory.

The airline records below are copied from the τ²-bench airline db.json (MIT, Sierra Research);
tests never read /work/shared.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph

from nodes.model import (
    OFFLINE_LABEL,
    ModelConfigError,
    ModelSettings,
    ScriptedChatModel,
    ScriptExhaustedError,
    describe_model,
)
from nodes.model import make_chat_model as _make_chat_model
from tools.airline.planner import GREETING_MESSAGE, HELP_MESSAGE, POLICY_SUMMARIES, TRANSFER_MESSAGE
from tools.airline.planner import AirlinePlanner as OfflinePlanner


def make_chat_model(settings: ModelSettings | None = None) -> Any:
    """Build the model as the app does for the airline (its offline planner)."""
    return _make_chat_model(settings, offline=OfflinePlanner)

REPO = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------
# Records copied from db.json (reservations, their owners, direct-flight searches, statuses).
# ---------------------------------------------------------------------------------------------

RESERVATIONS: dict[str, Any] = {'4WQ150': {'reservation_id': '4WQ150',
            'user_id': 'chen_jackson_3290',
            'origin': 'DFW',
            'destination': 'LAX',
            'flight_type': 'round_trip',
            'cabin': 'business',
            'flights': [{'origin': 'DFW',
                         'destination': 'LAX',
                         'flight_number': 'HAT170',
                         'date': '2024-05-22',
                         'price': 883},
                        {'origin': 'LAX',
                         'destination': 'DFW',
                         'flight_number': 'HAT022',
                         'date': '2024-05-26',
                         'price': 779}],
            'passengers': [{'first_name': 'Chen', 'last_name': 'Jackson', 'dob': '1956-07-07'},
                           {'first_name': 'Raj', 'last_name': 'Smith', 'dob': '1967-04-01'},
                           {'first_name': 'Fatima',
                            'last_name': 'Martin',
                            'dob': '1970-01-20'}],
            'payment_history': [{'payment_id': 'gift_card_3576581', 'amount': 4986}],
            'created_at': '2024-05-02T03:10:19',
            'total_baggages': 5,
            'nonfree_baggages': 0,
            'insurance': 'no'},
 '1N99U6': {'reservation_id': '1N99U6',
            'user_id': 'james_taylor_7043',
            'origin': 'LAS',
            'destination': 'IAH',
            'flight_type': 'round_trip',
            'cabin': 'economy',
            'flights': [{'origin': 'LAS',
                         'destination': 'PHX',
                         'flight_number': 'HAT284',
                         'date': '2024-05-19',
                         'price': 161},
                        {'origin': 'PHX',
                         'destination': 'IAH',
                         'flight_number': 'HAT152',
                         'date': '2024-05-19',
                         'price': 192},
                        {'origin': 'IAH',
                         'destination': 'LAS',
                         'flight_number': 'HAT112',
                         'date': '2024-05-27',
                         'price': 184}],
            'passengers': [{'first_name': 'James', 'last_name': 'Taylor', 'dob': '1997-01-23'},
                           {'first_name': 'Ivan', 'last_name': 'Taylor', 'dob': '1975-09-15'}],
            'payment_history': [{'payment_id': 'gift_card_5634230', 'amount': 1134}],
            'created_at': '2024-05-08T11:37:17',
            'total_baggages': 1,
            'nonfree_baggages': 0,
            'insurance': 'yes'},
 'YAX4DR': {'reservation_id': 'YAX4DR',
            'user_id': 'chen_lee_6825',
            'origin': 'BOS',
            'destination': 'MSP',
            'flight_type': 'one_way',
            'cabin': 'economy',
            'flights': [{'origin': 'BOS',
                         'destination': 'MCO',
                         'flight_number': 'HAT235',
                         'date': '2024-05-18',
                         'price': 122},
                        {'origin': 'MCO',
                         'destination': 'MSP',
                         'flight_number': 'HAT298',
                         'date': '2024-05-19',
                         'price': 127}],
            'passengers': [{'first_name': 'Chen', 'last_name': 'Lee', 'dob': '1967-12-12'},
                           {'first_name': 'Noah',
                            'last_name': 'Hernandez',
                            'dob': '1968-01-06'}],
            'payment_history': [{'payment_id': 'credit_card_4938634', 'amount': 498}],
            'created_at': '2024-05-05T23:00:15',
            'total_baggages': 0,
            'nonfree_baggages': 0,
            'insurance': 'no'},
 'K1NW8N': {'reservation_id': 'K1NW8N',
            'user_id': 'mohamed_silva_9265',
            'origin': 'JFK',
            'destination': 'SFO',
            'flight_type': 'round_trip',
            'cabin': 'basic_economy',
            'flights': [{'origin': 'JFK',
                         'destination': 'SFO',
                         'flight_number': 'HAT023',
                         'date': '2024-05-26',
                         'price': 53},
                        {'origin': 'SFO',
                         'destination': 'SEA',
                         'flight_number': 'HAT204',
                         'date': '2024-05-28',
                         'price': 71},
                        {'origin': 'SEA',
                         'destination': 'JFK',
                         'flight_number': 'HAT021',
                         'date': '2024-05-28',
                         'price': 65}],
            'passengers': [{'first_name': 'Mohamed', 'last_name': 'Silva', 'dob': '1960-11-26'},
                           {'first_name': 'Raj', 'last_name': 'Sanchez', 'dob': '1986-09-12'},
                           {'first_name': 'Liam', 'last_name': 'Wilson', 'dob': '1980-03-27'}],
            'payment_history': [{'payment_id': 'gift_card_6136092', 'amount': 567}],
            'created_at': '2024-05-14T16:03:16',
            'total_baggages': 0,
            'nonfree_baggages': 0,
            'insurance': 'no'},
 '8B92J5': {'reservation_id': '8B92J5',
            'user_id': 'aarav_lee_3563',
            'origin': 'MSP',
            'destination': 'EWR',
            'flight_type': 'one_way',
            'cabin': 'economy',
            'flights': [{'origin': 'MSP',
                         'destination': 'EWR',
                         'flight_number': 'HAT196',
                         'date': '2024-05-20',
                         'price': 163}],
            'passengers': [{'first_name': 'Aarav', 'last_name': 'Lee', 'dob': '1989-03-02'}],
            'payment_history': [{'payment_id': 'credit_card_7195750', 'amount': 193}],
            'created_at': '2024-05-05T18:27:32',
            'total_baggages': 1,
            'nonfree_baggages': 0,
            'insurance': 'yes'},
 'EJTH83': {'reservation_id': 'EJTH83',
            'user_id': 'ava_li_8840',
            'origin': 'DEN',
            'destination': 'PHL',
            'flight_type': 'one_way',
            'cabin': 'business',
            'flights': [{'origin': 'DEN',
                         'destination': 'PHL',
                         'flight_number': 'HAT080',
                         'date': '2024-05-14',
                         'price': 1152}],
            'passengers': [{'first_name': 'Liam', 'last_name': 'Kovacs', 'dob': '1962-08-19'},
                           {'first_name': 'Yara', 'last_name': 'Silva', 'dob': '1984-11-09'},
                           {'first_name': 'Mason', 'last_name': 'Kovacs', 'dob': '1972-12-01'}],
            'payment_history': [{'payment_id': 'gift_card_9286808', 'amount': 3546}],
            'created_at': '2024-05-12T19:40:55',
            'total_baggages': 1,
            'nonfree_baggages': 0,
            'insurance': 'yes'},
 '3I818F': {'reservation_id': '3I818F',
            'user_id': 'amelia_nguyen_7778',
            'origin': 'JFK',
            'destination': 'ATL',
            'flight_type': 'round_trip',
            'cabin': 'economy',
            'flights': [{'origin': 'JFK',
                         'destination': 'ATL',
                         'flight_number': 'HAT218',
                         'date': '2024-05-15',
                         'price': 171},
                        {'origin': 'ATL',
                         'destination': 'JFK',
                         'flight_number': 'HAT285',
                         'date': '2024-05-17',
                         'price': 114}],
            'passengers': [{'first_name': 'Mei', 'last_name': 'Lopez', 'dob': '1987-11-26'},
                           {'first_name': 'Raj', 'last_name': 'Smith', 'dob': '1988-07-02'},
                           {'first_name': 'Olivia',
                            'last_name': 'Anderson',
                            'dob': '1999-11-21'}],
            'payment_history': [{'payment_id': 'credit_card_4056234', 'amount': 855}],
            'created_at': '2024-05-02T23:08:21',
            'total_baggages': 0,
            'nonfree_baggages': 0,
            'insurance': 'no'}}

USERS: dict[str, Any] = {'chen_jackson_3290': {'user_id': 'chen_jackson_3290',
                       'name': {'first_name': 'Chen', 'last_name': 'Jackson'},
                       'address': {'address1': '848 Elm Avenue',
                                   'address2': 'Suite 690',
                                   'city': 'Seattle',
                                   'country': 'USA',
                                   'state': 'WA',
                                   'zip': '98174'},
                       'email': 'chen.jackson9941@example.com',
                       'dob': '1956-07-07',
                       'payment_methods': {'gift_card_3576581': {'source': 'gift_card',
                                                                 'id': 'gift_card_3576581',
                                                                 'amount': 245.0}},
                       'saved_passengers': [{'first_name': 'Raj',
                                             'last_name': 'Smith',
                                             'dob': '1967-04-01'}],
                       'membership': 'silver',
                       'reservations': ['4WQ150', 'DDHPNX', 'Y69PCE', '2JV270']},
 'james_taylor_7043': {'user_id': 'james_taylor_7043',
                       'name': {'first_name': 'James', 'last_name': 'Taylor'},
                       'address': {'address1': '133 Chestnut Street',
                                   'address2': 'Suite 494',
                                   'city': 'Houston',
                                   'country': 'USA',
                                   'state': 'TX',
                                   'zip': '77207'},
                       'email': 'james.taylor4788@example.com',
                       'dob': '1997-01-23',
                       'payment_methods': {'certificate_9380982': {'source': 'certificate',
                                                                   'id': 'certificate_9380982',
                                                                   'amount': 100.0},
                                           'gift_card_5634230': {'source': 'gift_card',
                                                                 'id': 'gift_card_5634230',
                                                                 'amount': 67.0}},
                       'saved_passengers': [{'first_name': 'Ivan',
                                             'last_name': 'Taylor',
                                             'dob': '1975-09-15'}],
                       'membership': 'silver',
                       'reservations': ['UUN48W', '1N99U6', '1R63WQ']},
 'chen_lee_6825': {'user_id': 'chen_lee_6825',
                   'name': {'first_name': 'Chen', 'last_name': 'Lee'},
                   'address': {'address1': '355 Hillcrest Drive',
                               'address2': 'Suite 365',
                               'city': 'San Francisco',
                               'country': 'USA',
                               'state': 'CA',
                               'zip': '94178'},
                   'email': 'chen.lee7831@example.com',
                   'dob': '1967-12-12',
                   'payment_methods': {'certificate_6730850': {'source': 'certificate',
                                                               'id': 'certificate_6730850',
                                                               'amount': 250.0},
                                       'certificate_9982533': {'source': 'certificate',
                                                               'id': 'certificate_9982533',
                                                               'amount': 100.0},
                                       'credit_card_4938634': {'source': 'credit_card',
                                                               'id': 'credit_card_4938634',
                                                               'brand': 'visa',
                                                               'last_four': '9990'}},
                   'saved_passengers': [{'first_name': 'Noah',
                                         'last_name': 'Hernandez',
                                         'dob': '1968-01-06'}],
                   'membership': 'gold',
                   'reservations': ['JW6LEQ', 'ICJ5WM', 'TVN3KL', 'ZBCR1P', '4KG36I', 'YAX4DR',
                                    '9NK7W8']},
 'mohamed_silva_9265': {'user_id': 'mohamed_silva_9265',
                        'name': {'first_name': 'Mohamed', 'last_name': 'Silva'},
                        'address': {'address1': '638 Elm Street',
                                    'address2': 'Suite 548',
                                    'city': 'Los Angeles',
                                    'country': 'USA',
                                    'state': 'CA',
                                    'zip': '91365'},
                        'email': 'mohamed.silva9198@example.com',
                        'dob': '1960-11-26',
                        'payment_methods': {'credit_card_5843230': {'source': 'credit_card',
                                                                    'id': 'credit_card_5843230',
                                                                    'brand': 'visa',
                                                                    'last_four': '2395'},
                                            'gift_card_8020792': {'source': 'gift_card',
                                                                  'id': 'gift_card_8020792',
                                                                  'amount': 198.0},
                                            'certificate_3765853': {'source': 'certificate',
                                                                    'id': 'certificate_3765853',
                                                                    'amount': 500.0},
                                            'gift_card_6136092': {'source': 'gift_card',
                                                                  'id': 'gift_card_6136092',
                                                                  'amount': 129.0},
                                            'certificate_9984806': {'source': 'certificate',
                                                                    'id': 'certificate_9984806',
                                                                    'amount': 250.0},
                                            'credit_card_2198526': {'source': 'credit_card',
                                                                    'id': 'credit_card_2198526',
                                                                    'brand': 'mastercard',
                                                                    'last_four': '9363'},
                                            'certificate_2765295': {'source': 'certificate',
                                                                    'id': 'certificate_2765295',
                                                                    'amount': 250.0}},
                        'saved_passengers': [{'first_name': 'Raj',
                                              'last_name': 'Sanchez',
                                              'dob': '1986-09-12'},
                                             {'first_name': 'Liam',
                                              'last_name': 'Wilson',
                                              'dob': '1980-03-27'}],
                        'membership': 'regular',
                        'reservations': ['K1NW8N']},
 'aarav_lee_3563': {'user_id': 'aarav_lee_3563',
                    'name': {'first_name': 'Aarav', 'last_name': 'Lee'},
                    'address': {'address1': '435 Main Street',
                                'address2': 'Suite 892',
                                'city': 'Washington',
                                'country': 'USA',
                                'state': 'DC',
                                'zip': '20207'},
                    'email': 'aarav.lee5880@example.com',
                    'dob': '1989-03-02',
                    'payment_methods': {'credit_card_7195750': {'source': 'credit_card',
                                                                'id': 'credit_card_7195750',
                                                                'brand': 'mastercard',
                                                                'last_four': '6559'},
                                        'gift_card_6737013': {'source': 'gift_card',
                                                              'id': 'gift_card_6737013',
                                                              'amount': 262.0}},
                    'saved_passengers': [{'first_name': 'Ivan',
                                          'last_name': 'Lee',
                                          'dob': '1963-02-27'},
                                         {'first_name': 'Sofia',
                                          'last_name': 'Santos',
                                          'dob': '1959-03-06'}],
                    'membership': 'regular',
                    'reservations': ['8B92J5', 'YKWHVU', 'S4B5FH', '3UNFGZ']},
 'ava_li_8840': {'user_id': 'ava_li_8840',
                 'name': {'first_name': 'Ava', 'last_name': 'Li'},
                 'address': {'address1': '955 Laurel Lane',
                             'address2': 'Suite 414',
                             'city': 'Columbus',
                             'country': 'USA',
                             'state': 'OH',
                             'zip': '43207'},
                 'email': 'ava.li8273@example.com',
                 'dob': '1998-08-11',
                 'payment_methods': {'gift_card_3397648': {'source': 'gift_card',
                                                           'id': 'gift_card_3397648',
                                                           'amount': 221.0},
                                     'gift_card_9286808': {'source': 'gift_card',
                                                           'id': 'gift_card_9286808',
                                                           'amount': 140.0},
                                     'certificate_2185445': {'source': 'certificate',
                                                             'id': 'certificate_2185445',
                                                             'amount': 500.0},
                                     'gift_card_8775838': {'source': 'gift_card',
                                                           'id': 'gift_card_8775838',
                                                           'amount': 21.0},
                                     'gift_card_1049722': {'source': 'gift_card',
                                                           'id': 'gift_card_1049722',
                                                           'amount': 259.0}},
                 'saved_passengers': [{'first_name': 'Liam',
                                       'last_name': 'Kovacs',
                                       'dob': '1962-08-19'}],
                 'membership': 'gold',
                 'reservations': ['86BIW2', 'TSBZC0', 'EJTH83', 'VHG5XU', 'GJUQ9G']},
 'amelia_nguyen_7778': {'user_id': 'amelia_nguyen_7778',
                        'name': {'first_name': 'Amelia', 'last_name': 'Nguyen'},
                        'address': {'address1': '523 Willow Lane',
                                    'address2': 'Suite 722',
                                    'city': 'Dallas',
                                    'country': 'USA',
                                    'state': 'TX',
                                    'zip': '75300'},
                        'email': 'amelia.nguyen8380@example.com',
                        'dob': '1980-01-20',
                        'payment_methods': {'credit_card_4056234': {'source': 'credit_card',
                                                                    'id': 'credit_card_4056234',
                                                                    'brand': 'visa',
                                                                    'last_four': '2963'},
                                            'certificate_9996397': {'source': 'certificate',
                                                                    'id': 'certificate_9996397',
                                                                    'amount': 150.0},
                                            'gift_card_6459612': {'source': 'gift_card',
                                                                  'id': 'gift_card_6459612',
                                                                  'amount': 38.0},
                                            'gift_card_7217252': {'source': 'gift_card',
                                                                  'id': 'gift_card_7217252',
                                                                  'amount': 255.0}},
                        'saved_passengers': [{'first_name': 'Raj',
                                              'last_name': 'Smith',
                                              'dob': '1988-07-02'}],
                        'membership': 'silver',
                        'reservations': ['U7QTYY', 'JC5T1E', '3I818F', '5J70ZW', '46JHMH',
                                         'FAKO3N', 'Z58PPL']}}

SEARCH: dict[str, Any] = {'LAS|IAH|2024-05-19': [{'flight_number': 'HAT175',
                         'origin': 'LAS',
                         'destination': 'IAH',
                         'status': 'available',
                         'scheduled_departure_time_est': '17:00:00',
                         'scheduled_arrival_time_est': '20:00:00',
                         'date': '2024-05-19',
                         'available_seats': {'basic_economy': 10, 'economy': 3, 'business': 2},
                         'prices': {'basic_economy': 96, 'economy': 155, 'business': 203}},
                        {'flight_number': 'HAT266',
                         'origin': 'LAS',
                         'destination': 'IAH',
                         'status': 'available',
                         'scheduled_departure_time_est': '13:00:00',
                         'scheduled_arrival_time_est': '16:00:00',
                         'date': '2024-05-19',
                         'available_seats': {'basic_economy': 8, 'economy': 16, 'business': 13},
                         'prices': {'basic_economy': 89, 'economy': 146, 'business': 373}}],
 'IAH|LAS|2024-05-19': [{'flight_number': 'HAT112',
                         'origin': 'IAH',
                         'destination': 'LAS',
                         'status': 'available',
                         'scheduled_departure_time_est': '22:00:00',
                         'scheduled_arrival_time_est': '01:00:00+1',
                         'date': '2024-05-19',
                         'available_seats': {'basic_economy': 19,
                                             'economy': 15,
                                             'business': 17},
                         'prices': {'basic_economy': 78, 'economy': 182, 'business': 291}},
                        {'flight_number': 'HAT131',
                         'origin': 'IAH',
                         'destination': 'LAS',
                         'status': 'available',
                         'scheduled_departure_time_est': '18:00:00',
                         'scheduled_arrival_time_est': '21:00:00',
                         'date': '2024-05-19',
                         'available_seats': {'basic_economy': 17,
                                             'economy': 15,
                                             'business': 16},
                         'prices': {'basic_economy': 54, 'economy': 136, 'business': 333}},
                        {'flight_number': 'HAT190',
                         'origin': 'IAH',
                         'destination': 'LAS',
                         'status': 'available',
                         'scheduled_departure_time_est': '01:00:00',
                         'scheduled_arrival_time_est': '04:00:00',
                         'date': '2024-05-19',
                         'available_seats': {'basic_economy': 7, 'economy': 20, 'business': 20},
                         'prices': {'basic_economy': 99, 'economy': 172, 'business': 316}},
                        {'flight_number': 'HAT286',
                         'origin': 'IAH',
                         'destination': 'LAS',
                         'status': 'available',
                         'scheduled_departure_time_est': '22:00:00',
                         'scheduled_arrival_time_est': '01:00:00+1',
                         'date': '2024-05-19',
                         'available_seats': {'basic_economy': 20, 'economy': 8, 'business': 8},
                         'prices': {'basic_economy': 65, 'economy': 128, 'business': 372}}],
 'MSP|EWR|2024-05-20': [{'flight_number': 'HAT141',
                          'origin': 'MSP',
                          'destination': 'EWR',
                          'status': 'available',
                          'scheduled_departure_time_est': '14:00:00',
                          'scheduled_arrival_time_est': '17:00:00',
                          'date': '2024-05-20',
                          'available_seats': {'basic_economy': 4,
                                              'economy': 1,
                                              'business': 19},
                          'prices': {'basic_economy': 58, 'economy': 161, 'business': 390}},
                         {'flight_number': 'HAT196',
                          'origin': 'MSP',
                          'destination': 'EWR',
                          'status': 'available',
                          'scheduled_departure_time_est': '11:00:00',
                          'scheduled_arrival_time_est': '14:00:00',
                          'date': '2024-05-20',
                          'available_seats': {'basic_economy': 16,
                                              'economy': 15,
                                              'business': 8},
                          'prices': {'basic_economy': 58, 'economy': 161, 'business': 403}},
                         {'flight_number': 'HAT300',
                          'origin': 'MSP',
                          'destination': 'EWR',
                          'status': 'available',
                          'scheduled_departure_time_est': '06:00:00',
                          'scheduled_arrival_time_est': '09:00:00',
                          'date': '2024-05-20',
                          'available_seats': {'basic_economy': 13,
                                              'economy': 9,
                                              'business': 20},
                          'prices': {'basic_economy': 78, 'economy': 174, 'business': 459}}],
 'MSP|EWR|2024-05-22': [{'flight_number': 'HAT141',
                         'origin': 'MSP',
                         'destination': 'EWR',
                         'status': 'available',
                         'scheduled_departure_time_est': '14:00:00',
                         'scheduled_arrival_time_est': '17:00:00',
                         'date': '2024-05-22',
                         'available_seats': {'basic_economy': 15, 'economy': 7, 'business': 18},
                         'prices': {'basic_economy': 99, 'economy': 171, 'business': 390}},
                        {'flight_number': 'HAT196',
                         'origin': 'MSP',
                         'destination': 'EWR',
                         'status': 'available',
                         'scheduled_departure_time_est': '11:00:00',
                         'scheduled_arrival_time_est': '14:00:00',
                         'date': '2024-05-22',
                         'available_seats': {'basic_economy': 8, 'economy': 17, 'business': 5},
                         'prices': {'basic_economy': 77, 'economy': 128, 'business': 203}},
                        {'flight_number': 'HAT300',
                         'origin': 'MSP',
                         'destination': 'EWR',
                         'status': 'available',
                         'scheduled_departure_time_est': '06:00:00',
                         'scheduled_arrival_time_est': '09:00:00',
                         'date': '2024-05-22',
                         'available_seats': {'basic_economy': 6, 'economy': 1, 'business': 4},
                         'prices': {'basic_economy': 59, 'economy': 108, 'business': 448}}],
 'LAS|IAH|2024-05-21': [{'flight_number': 'HAT175',
                         'origin': 'LAS',
                         'destination': 'IAH',
                         'status': 'available',
                         'scheduled_departure_time_est': '17:00:00',
                         'scheduled_arrival_time_est': '20:00:00',
                         'date': '2024-05-21',
                         'available_seats': {'basic_economy': 7, 'economy': 3, 'business': 16},
                         'prices': {'basic_economy': 91, 'economy': 114, 'business': 301}},
                        {'flight_number': 'HAT266',
                         'origin': 'LAS',
                         'destination': 'IAH',
                         'status': 'available',
                         'scheduled_departure_time_est': '13:00:00',
                         'scheduled_arrival_time_est': '16:00:00',
                         'date': '2024-05-21',
                         'available_seats': {'basic_economy': 0, 'economy': 11, 'business': 15},
                         'prices': {'basic_economy': 88, 'economy': 139, 'business': 207}}]}

STATUS: dict[str, Any] = {'HAT080|2024-05-14': 'cancelled',
 'HAT218|2024-05-15': 'delayed',
 'HAT285|2024-05-17': 'available',
 'HAT170|2024-05-22': 'available',
 'HAT022|2024-05-26': 'available'}


# ---------------------------------------------------------------------------------------------
# A fake airline behind a fake tool guard: τ-bench semantics, airlock's result envelope.
# ---------------------------------------------------------------------------------------------

WRITE_TOOLS = {
    "cancel_reservation",
    "update_reservation_flights",
    "update_reservation_baggages",
    "send_certificate",
}


class FakeAirline:
    """Answers tool calls from the records above.

    ``envelope=True`` mimics nodes/tool_guard.py + tools/airline/backend/ (``status`` added to
    dict results, ``{"status": "ok", "result": ...}`` for others, money results for writes);
    ``envelope=False`` returns plain τ-bench JSON (the updated reservation, bare strings).
    ``overrides`` maps a tool name to a canned (content, status) reply, e.g. a guardrail denial.
    """

    def __init__(
        self,
        *,
        envelope: bool = True,
        overrides: dict[str, tuple[dict[str, Any] | str, str]] | None = None,
    ) -> None:
        self.envelope = envelope
        self.overrides = overrides or {}
        self.reservations = copy.deepcopy(RESERVATIONS)
        self.users = copy.deepcopy(USERS)
        self.executed: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, name: str, args: dict[str, Any]) -> tuple[str, str]:
        if name in self.overrides:
            content, status = self.overrides[name]
            return (content if isinstance(content, str) else json.dumps(content)), status
        try:
            result = getattr(self, name)(**args)
        except LookupError as exc:
            message = str(exc).strip("'\"")
            if self.envelope:
                return json.dumps({"status": "error", "error": message}), "error"
            return f"Error: {message}", "error"
        if name in WRITE_TOOLS:
            self.executed.append((name, args))
        if not self.envelope:
            return (result if isinstance(result, str) else json.dumps(result)), "success"
        content = result if isinstance(result, dict) else {"status": "ok", "result": result}
        return json.dumps({"status": content.get("status", "ok"), **content}), "success"

    # reads
    def get_reservation_details(self, reservation_id: str) -> dict[str, Any]:
        if reservation_id not in self.reservations:
            raise LookupError(f"Reservation {reservation_id} not found")
        return copy.deepcopy(self.reservations[reservation_id])

    def get_user_details(self, user_id: str) -> dict[str, Any]:
        if user_id not in self.users:
            raise LookupError(f"User {user_id} not found")
        return copy.deepcopy(self.users[user_id])

    def search_direct_flight(self, origin: str, destination: str, date: str) -> list[Any]:
        return copy.deepcopy(SEARCH.get(f"{origin}|{destination}|{date}", []))

    def get_flight_status(self, flight_number: str, date: str) -> str:
        return str(STATUS[f"{flight_number}|{date}"])

    def transfer_to_human_agents(self, summary: str) -> str:
        return "Transfer successful"

    # writes
    def _money(self, tool_name: str, res: dict[str, Any], amount: float, pid: str) -> Any:
        if amount:
            res["payment_history"].append({"payment_id": pid, "amount": amount})
        if not self.envelope:
            return res
        direction = "charge" if amount > 0 else "refund" if amount < 0 else "none"
        status = {"charge": "captured", "refund": "refunded", "none": "completed"}[direction]
        return {
            "status": status,
            "tool": tool_name,
            "reservation_id": res["reservation_id"],
            "amount_usd": float(abs(amount)),
            "direction": direction,
            "currency": "USD",
            "charge_ids": ["ch_000001"] if amount else [],
            "reservation": res,
        }

    def update_reservation_flights(
        self, reservation_id: str, cabin: str, flights: list[dict[str, str]], payment_id: str
    ) -> Any:
        res = self.reservations[reservation_id]
        old = {(f["flight_number"], f["date"]): f for f in res["flights"]}
        new_legs, total = [], 0
        for leg in flights:
            key = (leg["flight_number"], leg["date"])
            if key in old and cabin == res["cabin"]:
                new_legs.append(old[key])
                total += old[key]["price"]
                continue
            found = [
                f
                for v in SEARCH.values()
                for f in v
                if (f["flight_number"], f["date"]) == key
            ]
            if not found:
                raise LookupError(f"Flight {key[0]} not available on {key[1]}")
            price = found[0]["prices"][cabin]
            new_legs.append({**{k: found[0][k] for k in ("origin", "destination")},
                             "flight_number": key[0], "date": key[1], "price": price})
            total += price
        pax = len(res["passengers"])
        amount = (total - sum(f["price"] for f in res["flights"])) * pax
        res["flights"], res["cabin"] = new_legs, cabin
        return self._money("update_reservation_flights", res, amount, payment_id)

    def update_reservation_baggages(
        self, reservation_id: str, total_baggages: int, nonfree_baggages: int, payment_id: str
    ) -> Any:
        res = self.reservations[reservation_id]
        amount = 50 * max(0, nonfree_baggages - res["nonfree_baggages"])
        res["total_baggages"], res["nonfree_baggages"] = total_baggages, nonfree_baggages
        return self._money("update_reservation_baggages", res, amount, payment_id)

    def cancel_reservation(self, reservation_id: str) -> Any:
        res = self.reservations[reservation_id]
        refunds = [
            {"payment_id": p["payment_id"], "amount": -p["amount"]} for p in res["payment_history"]
        ]
        res["payment_history"].extend(refunds)
        res["status"] = "cancelled"
        if not self.envelope:
            return res
        return {
            "status": "refunded",
            "tool": "cancel_reservation",
            "reservation_id": reservation_id,
            "amount_usd": float(-sum(r["amount"] for r in refunds)),
            "direction": "refund",
            "currency": "USD",
            "charge_ids": ["ch_000002"],
            "reservation": res,
        }

    def send_certificate(self, user_id: str, amount: float) -> Any:
        message = f"Certificate certificate_3221322 added to user {user_id} with amount {amount}."
        if not self.envelope:
            return message
        return {
            "status": "issued",
            "message": message,
            "certificate_id": "certificate_3221322",
            "user_id": user_id,
            "amount_usd": float(amount),
            "charge_ids": [],
        }


def system(user_id: str | None) -> SystemMessage:
    return SystemMessage(
        content=f"You are an airline agent.\n\nSigned-in customer: {user_id or 'unknown'}"
    )


class Conversation:
    """Drive the planner like the graph does: one model call, then the tool, until text."""

    def __init__(
        self, user_id: str | None, airline: FakeAirline | None = None, planner: Any = None
    ) -> None:
        self.airline = airline or FakeAirline()
        self.planner = planner or OfflinePlanner()
        self.history: list[AnyMessage] = []
        self.user_id = user_id
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def say(self, text: str, max_steps: int = 12) -> str:
        self.history.append(HumanMessage(content=text))
        for _ in range(max_steps):
            reply = self.planner.invoke([system(self.user_id), *self.history])
            assert isinstance(reply, AIMessage)
            self.history.append(reply)
            if not reply.tool_calls:
                assert isinstance(reply.content, str) and reply.content
                return reply.content
            assert len(reply.tool_calls) == 1, "one tool call per turn"
            assert reply.content == "", "no text alongside a tool call"
            call = reply.tool_calls[0]
            self.calls.append((call["name"], call["args"]))
            content, status = self.airline(call["name"], call["args"])
            self.history.append(
                ToolMessage(
                    content=content, tool_call_id=call["id"], name=call["name"], status=status
                )
            )
        raise AssertionError("the planner did not finish")

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


# ---------------------------------------------------------------------------------------------
# ScriptedChatModel
# ---------------------------------------------------------------------------------------------


def test_scripted_replays_in_order_and_records_calls() -> None:
    first = AIMessage(
        content="",
        tool_calls=[{"name": "get_user_details", "args": {"user_id": "x"}, "id": "call_a"}],
    )
    model = ScriptedChatModel(script=[first, "done"])
    out1 = model.invoke([HumanMessage(content="hi")])
    out2 = model.invoke([HumanMessage(content="hi"), out1])
    assert out1.tool_calls[0]["id"] == "call_a"
    assert out1.tool_calls[0]["args"] == {"user_id": "x"}
    assert out2.content == "done"
    assert model.call_count == 2
    assert [len(c) for c in model.calls] == [1, 2]
    assert model.calls[0][0].content == "hi"
    assert model.remaining == 0


def test_scripted_returns_copies() -> None:
    model = ScriptedChatModel(script=["a", "b"])
    out = model.invoke("x")
    out.content = "mutated"
    assert model.script[0].content == "a"


def test_scripted_callable_sees_the_conversation() -> None:
    def forge(messages: list[BaseMessage]) -> AIMessage:
        last = messages[-1]
        return AIMessage(
            content="",
            tool_calls=[
                {"name": "send_certificate", "args": {"amount": len(last.content)}, "id": None}
            ],
        )

    model = ScriptedChatModel(script=[forge])
    out = model.invoke([HumanMessage(content="12345")])
    assert out.tool_calls[0]["args"] == {"amount": 5}
    assert out.tool_calls[0]["id"] == "call_0_0"  # deterministic when the script gives none


def test_scripted_exhaustion_is_loud() -> None:
    model = ScriptedChatModel(script=["only"])
    model.invoke("first")
    with pytest.raises(ScriptExhaustedError) as info:
        model.invoke([HumanMessage(content="please add 99 bags")])
    err = info.value
    assert err.calls_made == 2 and err.script_length == 1
    assert isinstance(err.last_message, HumanMessage)
    assert "call #2" in str(err) and "please add 99 bags" in str(err)
    assert model.call_count == 2  # the failing call is recorded too


def test_scripted_bind_tools_returns_self_and_records_names() -> None:
    @tool
    def get_reservation_details(reservation_id: str) -> str:
        """Return a reservation."""
        return reservation_id

    openai_dict = {"type": "function", "function": {"name": "cancel_reservation"}}
    model = ScriptedChatModel(script=["x"])
    bound = model.bind_tools([get_reservation_details, openai_dict, {"name": "send_certificate"}])
    assert bound is model
    assert model.bound_tools == [
        "get_reservation_details",
        "cancel_reservation",
        "send_certificate",
    ]


def test_scripted_from_spec_round_trip_and_validation() -> None:
    spec = [
        {"tool_calls": [{"name": "cancel_reservation", "args": {"reservation_id": "K1NW8N"},
                         "id": "call_x"}]},
        {"tool_calls": [{"name": "get_user_details", "args": {"user_id": "u"}}]},
        "plain answer",
    ]
    model = ScriptedChatModel.from_spec(spec)
    again = ScriptedChatModel.from_spec(json.loads(json.dumps(model.to_spec())))
    assert again.to_spec() == model.to_spec()
    assert model.to_spec()[1]["tool_calls"][0]["id"] == "call_1_0"
    with pytest.raises(ValueError, match="unknown keys"):
        ScriptedChatModel.from_spec([{"contents": "typo"}])
    with pytest.raises(ValueError, match="needs a string 'name'"):
        ScriptedChatModel.from_spec([{"tool_calls": [{"args": {}}]}])
    with pytest.raises(TypeError, match="callable"):
        ScriptedChatModel(script=[lambda m: AIMessage(content="x")]).to_spec()


def test_scripted_start_and_conversation_cursor() -> None:
    spec = ["zero", "one", "two"]
    assert ScriptedChatModel.from_spec(spec, start=1).invoke("x").content == "one"
    model = ScriptedChatModel.from_spec(spec, cursor="conversation")
    history: list[BaseMessage] = [HumanMessage(content="a"), AIMessage(content="zero"),
                                  HumanMessage(content="b")]
    # Item = number of AIMessages already in the input: survives any restart.
    assert model.invoke(history).content == "one"
    assert model.invoke(history).content == "one"


def test_scripted_is_thread_safe() -> None:
    n = 64
    model = ScriptedChatModel(script=[f"r{i}" for i in range(n)])
    seen: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(8):
            out = model.invoke("go")
            with lock:
                seen.append(str(out.content))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == sorted(f"r{i}" for i in range(n))
    assert model.call_count == n
    with pytest.raises(ScriptExhaustedError):
        model.invoke("one too many")


def test_scripted_inside_a_langgraph_node() -> None:
    model = ScriptedChatModel(script=["hello from the script"])
    bound = model.bind_tools([])

    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [bound.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_edge(START, "agent")
    builder.add_edge("agent", END)
    out = builder.compile().invoke({"messages": [HumanMessage(content="hi")]})
    assert out["messages"][-1].content == "hello from the script"


def test_scripted_rebuilt_in_a_new_process() -> None:
    spec = [
        {"tool_calls": [{"name": "cancel_reservation", "args": {"reservation_id": "K1NW8N"},
                         "id": "call_cancel_1"}]},
        "Your reservation is cancelled.",
    ]
    code = (
        "import json, sys\n"
        "from langchain_core.messages import HumanMessage\n"
        "from nodes.model import ScriptedChatModel\n"
        "m = ScriptedChatModel.from_spec(json.loads(sys.argv[1]), start=int(sys.argv[2]))\n"
        "out = m.invoke([HumanMessage(content='resume')])\n"
        "print(json.dumps({'content': out.content, 'ids': [c['id'] for c in out.tool_calls]}))\n"
    )
    for start, expected in ((0, {"content": "", "ids": ["call_cancel_1"]}),
                            (1, {"content": "Your reservation is cancelled.", "ids": []})):
        done = subprocess.run(
            [sys.executable, "-c", code, json.dumps(spec), str(start)],
            cwd=REPO, capture_output=True, text=True, timeout=120, check=True,
        )
        assert json.loads(done.stdout.strip().splitlines()[-1]) == expected


# ---------------------------------------------------------------------------------------------
# OfflinePlanner: the demo conversations
# ---------------------------------------------------------------------------------------------


def test_planner_identity_and_bind_tools() -> None:
    planner = OfflinePlanner()
    assert planner._llm_type == "airlock-offline-planner"
    assert planner.bind_tools([{"type": "function", "function": {"name": "x"}}]) is planner
    assert planner.bound_tools == ["x"]
    assert describe_model(planner) == OFFLINE_LABEL


def test_show_reservation() -> None:
    convo = Conversation("chen_jackson_3290")
    reply = convo.say("show me reservation 4WQ150")
    assert convo.calls == [("get_reservation_details", {"reservation_id": "4WQ150"})]
    for fact in ("4WQ150", "round trip from DFW to LAX", "business", "HAT170 DFW to LAX on "
                 "2024-05-22", "HAT022 LAX to DFW on 2024-05-26", "Passengers: 3",
                 "Checked bags: 5 (0 paid)", "Travel insurance: no"):
        assert fact in reply
    assert "*" not in reply and "#" not in reply  # plain text


def test_show_unknown_booking_reports_the_error() -> None:
    convo = Conversation("chen_jackson_3290")
    reply = convo.say("what's in my booking ZFA04Y")
    assert convo.calls == [("get_reservation_details", {"reservation_id": "ZFA04Y"})]
    assert reply.startswith("I'm sorry") and "Reservation ZFA04Y not found" in reply


def test_list_reservations_then_pick_one() -> None:
    convo = Conversation("chen_jackson_3290")
    reply = convo.say("list my reservations")
    assert convo.calls == [("get_user_details", {"user_id": "chen_jackson_3290"})]
    assert "4WQ150, DDHPNX, Y69PCE, 2JV270" in reply and reply.endswith("?")
    reply = convo.say("4WQ150")
    assert convo.calls[-1] == ("get_reservation_details", {"reservation_id": "4WQ150"})
    assert "DFW to LAX" in reply


def test_change_flight_by_number_single_leg() -> None:
    convo = Conversation("aarav_lee_3563")
    reply = convo.say("change reservation 8B92J5 to flight HAT141 on 2024-05-22")
    assert convo.names() == [
        "get_reservation_details", "get_user_details", "update_reservation_flights"
    ]
    assert convo.calls[-1][1] == {
        "reservation_id": "8B92J5",
        "cabin": "economy",
        "flights": [{"flight_number": "HAT141", "date": "2024-05-22"}],
        "payment_id": "credit_card_7195750",
    }
    # 171 - 163 = USD 8 more for one passenger.
    assert "HAT141 on 2024-05-22" in reply and "USD 8 was charged to credit_card_7195750" in reply
    assert "ch_000001" in reply and "captured" in reply


def test_change_flight_by_number_keeps_the_other_journey() -> None:
    # τ² task 30: the outbound LAS-PHX-IAH becomes the direct HAT266, the return is kept.
    convo = Conversation("james_taylor_7043")
    reply = convo.say("change reservation 1N99U6 to flight HAT266 on 2024-05-19")
    assert convo.names() == [
        "get_reservation_details", "get_user_details", "search_direct_flight",
        "update_reservation_flights",
    ]
    assert convo.calls[2][1] == {"origin": "LAS", "destination": "IAH", "date": "2024-05-19"}
    assert convo.calls[-1][1] == {
        "reservation_id": "1N99U6",
        "cabin": "economy",
        "flights": [
            {"flight_number": "HAT266", "date": "2024-05-19"},
            {"flight_number": "HAT112", "date": "2024-05-27"},
        ],
        "payment_id": "gift_card_5634230",  # no credit card in the profile
    }
    assert "will be refunded to gift_card_5634230" in reply


def test_move_flight_to_a_date_picks_the_cheapest() -> None:
    convo = Conversation("aarav_lee_3563")
    reply = convo.say("move my flight in reservation 8B92J5 to May 22")
    assert convo.names() == [
        "get_reservation_details", "get_user_details", "search_direct_flight",
        "update_reservation_flights",
    ]
    assert convo.calls[2][1] == {"origin": "MSP", "destination": "EWR", "date": "2024-05-22"}
    # Economy fares that day: HAT141 171, HAT196 128, HAT300 108 (1 seat left, 1 passenger).
    assert convo.calls[-1][1]["flights"] == [{"flight_number": "HAT300", "date": "2024-05-22"}]
    assert "USD 55 will be refunded to credit_card_7195750" in reply


def test_change_uses_the_named_gift_card() -> None:
    convo = Conversation("aarav_lee_3563")
    convo.say("please move reservation 8B92J5 to 22 May and pay with my gift card")
    assert convo.calls[-1][1]["payment_id"] == "gift_card_6737013"


def test_cabin_change() -> None:
    convo = Conversation("aarav_lee_3563")
    reply = convo.say("switch reservation 8B92J5 to business")
    args = convo.calls[-1][1]
    assert convo.calls[-1][0] == "update_reservation_flights"
    assert args["cabin"] == "business"
    assert args["flights"] == [{"flight_number": "HAT196", "date": "2024-05-20"}]
    assert "in business" in reply


def test_change_asks_what_to_change() -> None:
    convo = Conversation("aarav_lee_3563")
    reply = convo.say("I want to change reservation 8B92J5")
    assert convo.calls == [] and reply.endswith("?")
    convo.say("to flight HAT141 on 2024-05-22")
    assert convo.calls[-1][1]["flights"] == [{"flight_number": "HAT141", "date": "2024-05-22"}]


def test_add_bags_free_allowance() -> None:
    # τ² task 12: gold, economy, 2 passengers -> 6 free bags.
    convo = Conversation("chen_lee_6825")
    reply = convo.say("add 2 checked bags to reservation YAX4DR")
    assert convo.names() == [
        "get_reservation_details", "get_user_details", "update_reservation_baggages"
    ]
    assert convo.calls[-1][1] == {
        "reservation_id": "YAX4DR",
        "total_baggages": 2,
        "nonfree_baggages": 0,
        "payment_id": "credit_card_4938634",
    }
    assert "2 checked bag(s), 0 of them paid" in reply and "nothing to pay" in reply


def test_add_bags_over_the_allowance() -> None:
    # silver, business, 3 passengers -> 9 free; 5 + 5 = 10 bags -> 1 paid, on the gift card.
    convo = Conversation("chen_jackson_3290")
    reply = convo.say("I need five more bags on reservation 4WQ150")
    assert convo.calls[-1][1] == {
        "reservation_id": "4WQ150",
        "total_baggages": 10,
        "nonfree_baggages": 1,
        "payment_id": "gift_card_3576581",
    }
    assert "USD 50 was charged to gift_card_3576581" in reply


def test_add_bags_asks_how_many() -> None:
    convo = Conversation("chen_lee_6825")
    assert convo.say("I want to add bags to reservation YAX4DR").endswith("?")
    convo.say("3")
    assert convo.calls[-1][1]["total_baggages"] == 3


def test_cancel_with_reason() -> None:
    convo = Conversation("mohamed_silva_9265")
    reply = convo.say("cancel reservation K1NW8N because my plans changed")
    assert convo.calls == [
        ("get_reservation_details", {"reservation_id": "K1NW8N"}),
        ("cancel_reservation", {"reservation_id": "K1NW8N"}),
    ]
    assert "Reservation K1NW8N is cancelled" in reply and "USD 567" in reply
    assert "5 to 7 business days" in reply


def test_cancel_leaves_the_reason_to_the_system_question() -> None:
    # The reason is a customer-stated fact the graph asks itself, with buttons, before the
    # cancellation's guardrails: the planner does not ask it a second time.
    convo = Conversation("mohamed_silva_9265")
    convo.say("please cancel reservation K1NW8N")
    assert convo.names() == ["get_reservation_details", "cancel_reservation"]


def test_cancel_without_id_lists_the_reservations() -> None:
    convo = Conversation("mohamed_silva_9265")
    reply = convo.say("I want to cancel my trip")
    assert convo.calls == [("get_user_details", {"user_id": "mohamed_silva_9265"})]
    assert "K1NW8N" in reply and reply.endswith("?")
    convo.say("K1NW8N, change of plan")
    assert convo.calls[-1] == ("cancel_reservation", {"reservation_id": "K1NW8N"})


def test_without_user_or_reservation_it_asks() -> None:
    convo = Conversation(None)
    reply = convo.say("cancel my reservation because I'm sick")
    assert convo.calls == [] and "reservation id" in reply and reply.endswith("?")
    convo.say("it is K1NW8N")
    assert convo.names() == ["get_reservation_details", "cancel_reservation"]
    reply = convo.say("add 1 bag to reservation YAX4DR")
    assert "user id" in reply
    convo.say("my user id is chen_lee_6825")
    assert convo.calls[-1][0] == "update_reservation_baggages"
    assert convo.calls[-1][1]["total_baggages"] == 1


@pytest.mark.parametrize(
    ("request_text", "tool_name", "check"),
    [
        ("I'd like to switch to business", "update_reservation_flights",
         lambda args: args["cabin"] == "business"),
        ("add a bag please", "update_reservation_baggages",
         lambda args: args["total_baggages"] == 2),
    ],
)
def test_follow_up_answer_continues_the_request(
    request_text: str, tool_name: str, check: Callable[[dict[str, Any]], bool]
) -> None:
    convo = Conversation("aarav_lee_3563")
    reply = convo.say(request_text)
    assert convo.calls == [("get_user_details", {"user_id": "aarav_lee_3563"})]
    assert "8B92J5, YKWHVU, S4B5FH, 3UNFGZ" in reply and reply.endswith("?")
    convo.say("8B92J5")
    assert convo.calls[-1][0] == tool_name and check(convo.calls[-1][1])


def test_pronoun_refers_to_the_last_reservation() -> None:
    convo = Conversation("chen_lee_6825")
    convo.say("show me reservation YAX4DR")
    convo.say("add one bag to it")
    assert convo.calls[-1][0] == "update_reservation_baggages"
    assert convo.calls[-1][1]["reservation_id"] == "YAX4DR"


@pytest.mark.parametrize(
    ("question", "topic"),
    [
        ("what is the baggage allowance?", "baggage"),
        ("how many free bags do I get?", "baggage"),
        ("what are the cancellation rules?", "cancellation"),
        ("can I change my flight?", "change"),
        ("what is your compensation policy?", "compensation"),
        ("can I add travel insurance?", "insurance"),
        ("can I get a refund?", "cancellation"),
    ],
)
def test_policy_questions_answer_without_tools(question: str, topic: str) -> None:
    convo = Conversation("chen_lee_6825")
    assert convo.say(question) == POLICY_SUMMARIES[topic]
    assert convo.calls == []


def test_transfer_to_human() -> None:
    convo = Conversation("chen_lee_6825")
    reply = convo.say("I want to talk to a human agent please")
    assert convo.names() == ["transfer_to_human_agents"]
    assert "chen_lee_6825" in convo.calls[0][1]["summary"]
    assert reply == TRANSFER_MESSAGE


def test_compensation_for_a_cancelled_flight() -> None:
    convo = Conversation("ava_li_8840")
    reply = convo.say("my flight was cancelled, I want compensation for reservation EJTH83")
    assert convo.calls == [
        ("get_reservation_details", {"reservation_id": "EJTH83"}),
        ("get_flight_status", {"flight_number": "HAT080", "date": "2024-05-14"}),
        ("send_certificate", {"user_id": "ava_li_8840", "amount": 300}),  # 3 passengers
    ]
    assert "USD 300" in reply and "certificate_3221322" in reply


def test_compensation_for_a_delayed_flight() -> None:
    user = RESERVATIONS["3I818F"]["user_id"]
    convo = Conversation(user)
    convo.say("Flight delayed. I'd like compensation for reservation 3I818F.")
    assert convo.calls[-1] == ("send_certificate", {"user_id": user, "amount": 150})
    assert convo.names().count("get_flight_status") == 2


def test_no_compensation_when_nothing_went_wrong() -> None:
    convo = Conversation("chen_jackson_3290")
    reply = convo.say("I want compensation for reservation 4WQ150")
    assert "send_certificate" not in convo.names()
    assert "cannot offer compensation" in reply


@pytest.mark.parametrize("text", ["hello", "hi", "Hola", "Bonjour!", "good morning"])
def test_greetings_are_answered(text: str) -> None:
    convo = Conversation("chen_lee_6825")
    assert convo.say(text) == GREETING_MESSAGE


@pytest.mark.parametrize("text", ["what's the weather on mars", ""])
def test_unknown_gets_help(text: str) -> None:
    convo = Conversation("chen_lee_6825")
    assert convo.say(text or " ") == HELP_MESSAGE
    assert convo.calls == []


def test_pii_placeholders_are_ignored() -> None:
    convo = Conversation("chen_jackson_3290")
    convo.say("I'm <PERSON_1>, email <EMAIL_ADDRESS_1>, show me reservation 4WQ150 please")
    assert convo.calls == [("get_reservation_details", {"reservation_id": "4WQ150"})]


# ---------------------------------------------------------------------------------------------
# OfflinePlanner: write outcomes other than success
# ---------------------------------------------------------------------------------------------

DENIED = (
    {"status": "denied", "guardrail": "pre-tool", "rule": "basic_economy_frozen",
     "message": "Basic economy flights cannot be modified."},
    "success",
)
DECLINED = (
    {"status": "declined_by_user",
     "message": "The customer did not confirm; nothing was executed."},
    "success",
)
FALLBACK = (
    {"status": "unavailable",
     "message": "The payment service is unavailable. Please try again in a few minutes."},
    "success",
)
ERROR = ({"status": "error", "error": "Gift card balance is not enough"}, "error")
REJECTED = ({"status": "rejected_by_reviewer", "message": "Amount looks wrong."}, "success")


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (DENIED, "denied by a guardrail (Basic economy flights cannot be modified)"),
        (DECLINED, "You declined the confirmation"),
        (FALLBACK, "The payment service is unavailable"),
        (ERROR, "I'm sorry, I could not change the flights of reservation 8B92J5: Gift card"),
        (REJECTED, "A reviewer rejected the request"),
    ],
)
def test_write_failures_are_reported_and_never_retried(
    override: tuple[dict[str, Any], str], expected: str
) -> None:
    airline = FakeAirline(overrides={"update_reservation_flights": override})
    convo = Conversation("aarav_lee_3563", airline)
    reply = convo.say("switch reservation 8B92J5 to business")
    assert expected in reply
    assert convo.names().count("update_reservation_flights") == 1
    # Asking the planner again with the same history gives the same text, not a retry.
    again = OfflinePlanner().invoke([system("aarav_lee_3563"), *convo.history])
    assert not again.tool_calls and again.content == reply


def test_tau_bench_plain_results_are_understood() -> None:
    airline = FakeAirline(envelope=False)
    convo = Conversation("chen_jackson_3290", airline)
    reply = convo.say("add 5 bags to reservation 4WQ150")
    assert "USD 50 was charged to gift_card_3576581" in reply
    convo = Conversation("ava_li_8840", FakeAirline(envelope=False))
    reply = convo.say("I'd like compensation for reservation EJTH83, the flight was cancelled")
    assert "certificate_3221322" in reply
    convo = Conversation("chen_lee_6825", FakeAirline(envelope=False))
    convo.say("what's in reservation ZZZ999")
    assert "not found" in convo.history[-1].content


def test_deduplicated_result_says_so() -> None:
    dedup = {"status": "deduplicated", "original_status": "captured", "tool": "x",
             "reservation_id": "8B92J5", "amount_usd": 8.0, "direction": "charge",
             "charge_ids": ["ch_9"]}
    airline = FakeAirline(overrides={"update_reservation_flights": (dedup, "success")})
    reply = Conversation("aarav_lee_3563", airline).say(
        "change reservation 8B92J5 to flight HAT141 on 2024-05-22"
    )
    assert "already been completed" in reply and "ch_9" in reply


# ---------------------------------------------------------------------------------------------
# OfflinePlanner: statelessness, determinism, speed, regex safety
# ---------------------------------------------------------------------------------------------


def test_stateless_and_deterministic_ids() -> None:
    convo = Conversation("chen_lee_6825")
    convo.say("show me reservation YAX4DR")
    convo.say("add 2 bags to reservation YAX4DR")
    ids = [m.tool_calls[0]["id"] for m in convo.history if isinstance(m, AIMessage)
           and m.tool_calls]
    assert ids == ["call_0", "call_1", "call_2", "call_3"]
    # Any prefix of the conversation gets the same answer from a brand-new planner.
    for cut in range(1, len(convo.history)):
        if isinstance(convo.history[cut], AIMessage):
            fresh = OfflinePlanner().invoke([system("chen_lee_6825"), *convo.history[:cut]])
            assert fresh.content == convo.history[cut].content
            assert fresh.tool_calls == convo.history[cut].tool_calls


def test_signed_in_user_beats_a_stated_one() -> None:
    convo = Conversation("chen_lee_6825")
    convo.say("I am mia_li_3668, list my reservations")
    assert convo.calls[0] == ("get_user_details", {"user_id": "chen_lee_6825"})


def test_planner_inside_a_langgraph_graph() -> None:
    airline = FakeAirline()

    @tool
    def get_reservation_details(reservation_id: str) -> str:
        """Return the reservation."""
        return airline("get_reservation_details", {"reservation_id": reservation_id})[0]

    @tool
    def cancel_reservation(reservation_id: str) -> str:
        """Cancel the reservation."""
        return airline("cancel_reservation", {"reservation_id": reservation_id})[0]

    from langgraph.prebuilt import ToolNode, tools_condition

    model = OfflinePlanner().bind_tools([get_reservation_details, cancel_reservation])

    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke([system("mohamed_silva_9265"), *state["messages"]])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode([get_reservation_details, cancel_reservation]))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    out = builder.compile().invoke(
        {"messages": [HumanMessage(content="cancel reservation K1NW8N, change of plan")]}
    )
    assert airline.executed == [("cancel_reservation", {"reservation_id": "K1NW8N"})]
    assert "is cancelled" in out["messages"][-1].content


@pytest.mark.parametrize(
    "evil",
    [
        "reservation " * 20000,
        "a" * 200000,
        "1/" * 100000,
        "may " * 50000 + "!",
        "<" + "A_" * 100000,
        "add " + "extra " * 50000 + "bags",
        "HAT" + "1" * 200000,
        "ab_" * 100000 + "1",
    ],
)
def test_hostile_input_gets_an_answer(evil: str) -> None:
    # Worst-case timings of such shapes belong to `python -m evals.fuzz`, not to a test threshold.
    reply = OfflinePlanner().invoke([system("chen_lee_6825"), HumanMessage(content=evil)])
    assert isinstance(reply, AIMessage) and isinstance(reply.content, str)


# ---------------------------------------------------------------------------------------------
# Factory
# ---------------------------------------------------------------------------------------------


def test_settings_default_to_offline() -> None:
    settings = ModelSettings.from_env({})
    assert settings.provider == "offline" and settings.model == "gpt-4o-mini"
    model = make_chat_model(settings)
    assert isinstance(model, OfflinePlanner)
    assert describe_model(model) == "offline rule-based planner (no LLM)"


def test_settings_openai_when_a_key_is_set() -> None:
    settings = ModelSettings.from_env({"OPENAI_API_KEY": "sk-test", "AIRLOCK_MODEL": "gpt-4o"})
    assert settings.provider == "openai" and settings.model == "gpt-4o"
    assert settings.api_key == "sk-test" and "sk-test" not in repr(settings)


def test_settings_local_endpoint_without_a_key() -> None:
    env = {"AIRLOCK_OPENAI_BASE_URL": "http://127.0.0.1:8000/v1", "AIRLOCK_MODEL": "qwen2.5"}
    settings = ModelSettings.from_env(env)
    assert settings.provider == "openai" and settings.api_key is None
    model = make_chat_model(settings)
    from langchain_openai import ChatOpenAI

    assert isinstance(model, ChatOpenAI)
    assert model.openai_api_base == "http://127.0.0.1:8000/v1"
    assert model.model_name == "qwen2.5" and model.temperature == 0
    assert describe_model(model) == "openai:qwen2.5 @ http://127.0.0.1:8000/v1"
    assert describe_model(model.bind_tools([])) == "openai:qwen2.5 @ http://127.0.0.1:8000/v1"


def test_settings_openai_base_url_fallback_and_aliases() -> None:
    env = {"AIRLOCK_MODEL_PROVIDER": "Ollama", "OPENAI_BASE_URL": "http://localhost:11434/v1",
           "AIRLOCK_MODEL_TEMPERATURE": "0.3"}
    settings = ModelSettings.from_env(env)
    assert settings.provider == "openai" and settings.base_url == "http://localhost:11434/v1"
    assert settings.temperature == pytest.approx(0.3)
    # OPENAI_BASE_URL alone does not switch the default provider away from offline.
    assert ModelSettings.from_env({"OPENAI_BASE_URL": "http://x/v1"}).provider == "offline"


def test_settings_explicit_offline_wins_over_a_key() -> None:
    env = {"AIRLOCK_MODEL_PROVIDER": "offline", "OPENAI_API_KEY": "sk-test"}
    assert isinstance(make_chat_model(ModelSettings.from_env(env)), OfflinePlanner)


def test_openai_default_endpoint_label() -> None:
    model = make_chat_model(ModelSettings(provider="openai", api_key="sk-test"))
    assert describe_model(model) == "openai:gpt-4o-mini @ https://api.openai.com/v1"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AIRLOCK_MODEL_PROVIDER": "openai"}, "needs OPENAI_API_KEY"),
        ({"AIRLOCK_MODEL_PROVIDER": "anthropic"}, "not supported"),
        ({"AIRLOCK_OPENAI_BASE_URL": "localhost:8000"}, "must start with http"),
        ({"AIRLOCK_MODEL_TEMPERATURE": "hot"}, "not a number"),
        ({"AIRLOCK_MODEL_TEMPERATURE": "9"}, "between 0 and 2"),
        ({"AIRLOCK_MODEL": "   ", "OPENAI_API_KEY": "k", "AIRLOCK_MODEL_PROVIDER": "openai"},
         None),
    ],
)
def test_settings_errors(env: dict[str, str], message: str | None) -> None:
    if message is None:  # a blank value means "unset": the default model is used
        assert ModelSettings.from_env(env).model == "gpt-4o-mini"
        return
    with pytest.raises(ModelConfigError, match=message):
        ModelSettings.from_env(env)


def test_settings_error_says_what_to_set() -> None:
    with pytest.raises(ModelConfigError) as info:
        ModelSettings(provider="openai")
    text = str(info.value)
    assert "OPENAI_API_KEY" in text and "AIRLOCK_OPENAI_BASE_URL" in text
    assert "AIRLOCK_MODEL_PROVIDER=offline" in text


def test_describe_scripted_model() -> None:
    assert describe_model(ScriptedChatModel(script=["a", "b"])) == (
        "scripted test model (2 responses)"
    )


def test_callable_type_alias_is_usable() -> None:
    item: Callable[[list[BaseMessage]], AIMessage] = lambda m: AIMessage(content="ok")  # noqa: E731
    assert ScriptedChatModel(script=[item]).invoke("x").content == "ok"


def test_a_global_llm_cache_does_not_short_circuit_the_script() -> None:
    from langchain_core.caches import InMemoryCache
    from langchain_core.globals import get_llm_cache, set_llm_cache

    previous = get_llm_cache()
    set_llm_cache(InMemoryCache())
    try:
        model = ScriptedChatModel(script=["one", "two"])
        assert [model.invoke("same").content, model.invoke("same").content] == ["one", "two"]
    finally:
        set_llm_cache(previous)


def test_user_message_while_a_call_is_in_flight_continues_the_request() -> None:
    convo = Conversation("chen_lee_6825")
    convo.history.append(HumanMessage(content="add 2 bags to reservation YAX4DR"))
    first = convo.planner.invoke([system("chen_lee_6825"), *convo.history])
    assert first.tool_calls[0]["name"] == "get_reservation_details"
    convo.history.append(first)
    convo.history.append(HumanMessage(content="hurry please"))  # no tool result yet
    again = convo.planner.invoke([system("chen_lee_6825"), *convo.history])
    assert again.tool_calls[0]["name"] == "get_reservation_details"
