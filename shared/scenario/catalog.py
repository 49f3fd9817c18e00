"""Device catalog and room layouts the generator draws from.

Plain data, no logic: which rooms a home has, which devices a room may hold (modelled on Home
Assistant entity domains), which real-world manufacturers/models exist per device kind, and the
name lists for owners. Keeping it in one place makes the generator's output easy to audit and to
extend without touching the sampling code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from shared.scenario.model import Domain


@dataclass(frozen=True, slots=True)
class Slot:
    """A device a room may hold: present with probability ``p``.

    ``source`` links a metering sensor to the switch it measures (same room); the sensor is only
    created when that switch exists.
    """

    domain: Domain
    thing: str
    kind: str
    p: float = 1.0
    source: str = ""


@dataclass(frozen=True, slots=True)
class DeviceModel:
    manufacturer: str
    model: str
    connectivity: str


ALWAYS_ROOMS: Final = (
    "kitchen",
    "living_room",
    "bedroom",
    "bathroom",
    "hallway",
    "office",
    "garage",
    "garden",
    "utility",
)
OPTIONAL_ROOMS: Final = ("bedroom2", "kids_room", "dining_room")
"""A home gets one of these: ten rooms in all."""

_L: Final = "light"
_C: Final = "climate"
_K: Final = "lock"
_B: Final = "binary_sensor"
_S: Final = "sensor"
_W: Final = "switch"
_V: Final = "cover"
_M: Final = "media_player"

ROOM_SLOTS: Final[dict[str, tuple[Slot, ...]]] = {
    "kitchen": (
        Slot(_L, "ceiling", "ceiling"),
        Slot(_L, "counter", "strip", 0.5),
        Slot(_B, "motion", "motion"),
        Slot(_B, "window", "window", 0.5),
        Slot(_B, "smoke", "smoke", 0.4),
        Slot(_S, "temperature", "temperature"),
        Slot(_S, "humidity", "humidity", 0.3),
        Slot(_W, "coffee_maker", "plug", 0.6),
        Slot(_S, "coffee_maker_power", "power", 1.0, "coffee_maker"),
        Slot(_W, "dishwasher", "plug", 0.3),
        Slot(_V, "blind", "blind", 0.2),
    ),
    "living_room": (
        Slot(_L, "ceiling", "ceiling"),
        Slot(_L, "floor_lamp", "lamp", 0.6),
        Slot(_L, "tv_backlight", "strip", 0.2),
        Slot(_C, "thermostat", "thermostat"),
        Slot(_M, "tv", "tv"),
        Slot(_M, "speaker", "speaker", 0.5),
        Slot(_B, "motion", "motion"),
        Slot(_B, "window", "window"),
        Slot(_S, "temperature", "temperature"),
        Slot(_S, "humidity", "humidity", 0.3),
        Slot(_S, "illuminance", "illuminance", 0.3),
        Slot(_V, "blind", "blind"),
    ),
    "bedroom": (
        Slot(_L, "ceiling", "ceiling"),
        Slot(_L, "bedside", "lamp"),
        Slot(_C, "thermostat", "thermostat", 0.3),
        Slot(_V, "blind", "blind"),
        Slot(_B, "motion", "motion"),
        Slot(_B, "window", "window"),
        Slot(_S, "temperature", "temperature"),
        Slot(_S, "humidity", "humidity", 0.2),
        Slot(_M, "speaker", "speaker", 0.2),
    ),
    "bedroom2": (
        Slot(_L, "ceiling", "ceiling"),
        Slot(_L, "lamp", "lamp", 0.5),
        Slot(_V, "blind", "blind", 0.6),
        Slot(_B, "motion", "motion", 0.7),
        Slot(_B, "window", "window"),
        Slot(_S, "temperature", "temperature", 0.7),
    ),
    "kids_room": (
        Slot(_L, "ceiling", "ceiling"),
        Slot(_L, "night_light", "lamp"),
        Slot(_V, "blind", "blind", 0.7),
        Slot(_B, "motion", "motion"),
        Slot(_B, "window", "window"),
        Slot(_S, "temperature", "temperature"),
    ),
    "dining_room": (
        Slot(_L, "pendant", "ceiling"),
        Slot(_B, "motion", "motion"),
        Slot(_B, "window", "window"),
        Slot(_S, "temperature", "temperature", 0.5),
        Slot(_V, "blind", "blind", 0.5),
    ),
    "bathroom": (
        Slot(_L, "ceiling", "ceiling"),
        Slot(_L, "mirror", "strip", 0.4),
        Slot(_B, "motion", "motion"),
        Slot(_B, "window", "window", 0.5),
        Slot(_S, "humidity", "humidity"),
        Slot(_S, "temperature", "temperature", 0.4),
        Slot(_W, "towel_heater", "relay", 0.6),
    ),
    "hallway": (
        Slot(_L, "ceiling", "ceiling"),
        Slot(_B, "motion", "motion"),
        Slot(_B, "front_door", "door"),
        Slot(_K, "front_door", "door_lock"),
        Slot(_B, "smoke", "smoke", 0.4),
    ),
    "office": (
        Slot(_L, "ceiling", "ceiling"),
        Slot(_L, "desk_lamp", "lamp", 0.7),
        Slot(_W, "monitor", "plug", 0.5),
        Slot(_S, "monitor_power", "power", 1.0, "monitor"),
        Slot(_S, "temperature", "temperature", 0.6),
        Slot(_S, "humidity", "humidity", 0.3),
        Slot(_B, "motion", "motion"),
        Slot(_B, "window", "window", 0.5),
        Slot(_M, "speaker", "speaker", 0.3),
        Slot(_C, "thermostat", "thermostat", 0.3),
    ),
    "garage": (
        Slot(_L, "ceiling", "ceiling"),
        Slot(_V, "garage_door", "garage_door"),
        Slot(_B, "garage_door", "door", 0.6),
        Slot(_W, "ev_charger", "relay", 0.3),
        Slot(_S, "ev_charger_power", "power", 1.0, "ev_charger"),
        Slot(_S, "ev_charger_energy", "energy", 1.0, "ev_charger"),
        Slot(_B, "motion", "motion", 0.4),
        Slot(_K, "side_door", "door_lock", 0.5),
    ),
    "garden": (
        Slot(_L, "path", "outdoor"),
        Slot(_L, "porch", "outdoor", 0.5),
        Slot(_W, "irrigation", "relay", 0.8),
        Slot(_B, "motion", "motion", 0.6),
        Slot(_S, "temperature", "temperature"),
        Slot(_S, "humidity", "humidity", 0.2),
        Slot(_S, "illuminance", "illuminance"),
        Slot(_K, "gate", "door_lock", 0.3),
        Slot(_B, "gate", "door", 0.3),
        Slot(_V, "awning", "awning", 0.2),
    ),
    "utility": (
        Slot(_S, "main_power", "power"),
        Slot(_S, "main_energy", "energy"),
        Slot(_W, "washing_machine", "plug", 0.5),
        Slot(_S, "washing_machine_power", "power", 1.0, "washing_machine"),
        Slot(_W, "water_heater", "relay", 0.4),
        Slot(_S, "solar_power", "power", 0.3),
        Slot(_S, "solar_energy", "energy", 1.0, "solar_power"),
        Slot(_B, "water_leak", "moisture", 0.3),
    ),
}

MODELS: Final[dict[str, tuple[DeviceModel, ...]]] = {
    "ceiling": (
        DeviceModel("Philips", "Hue White Ambiance A19", "zigbee"),
        DeviceModel("Philips", "Hue Enrave ceiling", "zigbee"),
        DeviceModel("IKEA", "TRADFRI LED1545G12", "zigbee"),
        DeviceModel("Nanoleaf", "Essentials A19", "thread"),
        DeviceModel("Shelly", "Dimmer 2", "wifi"),
    ),
    "lamp": (
        DeviceModel("Philips", "Hue Go", "zigbee"),
        DeviceModel("Philips", "Hue Color A19", "zigbee"),
        DeviceModel("IKEA", "TRADFRI LED1924G9", "zigbee"),
        DeviceModel("LIFX", "LIFX Mini Color", "wifi"),
    ),
    "strip": (
        DeviceModel("Philips", "Hue Lightstrip Plus", "zigbee"),
        DeviceModel("Govee", "H6159 RGB strip", "wifi"),
        DeviceModel("Nanoleaf", "Essentials Lightstrip", "thread"),
    ),
    "outdoor": (
        DeviceModel("Philips", "Hue Calla pathway", "zigbee"),
        DeviceModel("Philips", "Hue Lucca wall", "zigbee"),
        DeviceModel("Shelly", "Plus 1PM", "wifi"),
    ),
    "thermostat": (
        DeviceModel("Google", "Nest Learning Thermostat", "wifi"),
        DeviceModel("tado", "Smart Thermostat V3+", "wifi"),
        DeviceModel("Ecobee", "SmartThermostat Premium", "wifi"),
        DeviceModel("Netatmo", "Smart Thermostat", "wifi"),
    ),
    "door_lock": (
        DeviceModel("Yale", "Assure Lock 2", "zwave"),
        DeviceModel("Nuki", "Smart Lock 3.0 Pro", "thread"),
        DeviceModel("Danalock", "V3", "zigbee"),
    ),
    "motion": (
        DeviceModel("Aqara", "RTCGQ11LM", "zigbee"),
        DeviceModel("Philips", "Hue Motion SML001", "zigbee"),
        DeviceModel("IKEA", "TRADFRI E1745", "zigbee"),
    ),
    "door": (DeviceModel("Aqara", "MCCGQ11LM", "zigbee"), DeviceModel("Shelly", "Door/Window 2", "wifi")),
    "window": (DeviceModel("Aqara", "MCCGQ11LM", "zigbee"), DeviceModel("Sonoff", "SNZB-04", "zigbee")),
    "smoke": (DeviceModel("Heiman", "HS1SA", "zigbee"), DeviceModel("Nest", "Protect", "wifi")),
    "moisture": (DeviceModel("Aqara", "SJCGQ11LM", "zigbee"), DeviceModel("Shelly", "Flood", "wifi")),
    "temperature": (
        DeviceModel("Aqara", "WSDCGQ11LM", "zigbee"),
        DeviceModel("Sonoff", "SNZB-02", "zigbee"),
        DeviceModel("Shelly", "H&T", "wifi"),
    ),
    "humidity": (DeviceModel("Aqara", "WSDCGQ11LM", "zigbee"), DeviceModel("Sonoff", "SNZB-02", "zigbee")),
    "illuminance": (
        DeviceModel("Aqara", "GZCGQ01LM", "zigbee"),
        DeviceModel("Philips", "Hue Outdoor Sensor SML002", "zigbee"),
    ),
    "power": (
        DeviceModel("Shelly", "Plug S", "wifi"),
        DeviceModel("Shelly", "Pro 3EM", "wifi"),
        DeviceModel("Aqara", "SP-EUC01", "zigbee"),
    ),
    "energy": (DeviceModel("Shelly", "Pro 3EM", "wifi"), DeviceModel("Aqara", "SP-EUC01", "zigbee")),
    "plug": (
        DeviceModel("Shelly", "Plug S", "wifi"),
        DeviceModel("IKEA", "TRADFRI E1603", "zigbee"),
        DeviceModel("Aqara", "SP-EUC01", "zigbee"),
    ),
    "relay": (DeviceModel("Shelly", "Pro 1PM", "wifi"), DeviceModel("Sonoff", "ZBMINI", "zigbee")),
    "blind": (
        DeviceModel("Somfy", "Sonesse 30 RTS", "rts"),
        DeviceModel("IKEA", "FYRTUR", "zigbee"),
        DeviceModel("Aqara", "Roller Shade E1", "zigbee"),
    ),
    "garage_door": (DeviceModel("Chamberlain", "myQ MR50", "wifi"), DeviceModel("Somfy", "Dexxo Pro", "rts")),
    "awning": (DeviceModel("Somfy", "Sunea io", "io"),),
    "tv": (
        DeviceModel("Samsung", "QE55Q80C", "wifi"),
        DeviceModel("LG", "OLED55C3", "wifi"),
        DeviceModel("Sony", "Bravia XR-55A80L", "wifi"),
    ),
    "speaker": (
        DeviceModel("Sonos", "One SL", "wifi"),
        DeviceModel("Sonos", "Era 100", "wifi"),
        DeviceModel("Google", "Nest Audio", "wifi"),
    ),
}

APPLIANCES: Final[dict[str, tuple[str, int, int]]] = {
    # thing: (load type, min rated W, max rated W)
    "coffee_maker": ("coffee maker", 900, 1500),
    "dishwasher": ("dishwasher", 1800, 2400),
    "towel_heater": ("towel heater", 300, 600),
    "monitor": ("monitor", 25, 60),
    "ev_charger": ("ev charger", 7400, 11000),
    "irrigation": ("irrigation valve", 6, 24),
    "washing_machine": ("washing machine", 1800, 2300),
    "water_heater": ("water heater", 2000, 3000),
}

REGIONS: Final[dict[str, tuple[float, float]]] = {
    # region: (sunrise h, sunset h) early June, local clock
    "eu-west": (5.5, 21.9),
    "eu-central": (5.0, 21.3),
    "eu-north": (3.9, 22.6),
    "eu-south": (6.2, 21.2),
    "us-east": (5.4, 20.5),
}

FIRST_NAMES: Final = (
    "Aurelia", "Bastian", "Cordelia", "Dashiell", "Evadne", "Florian", "Genevieve", "Horatio",
    "Isolde", "Jasper", "Katriona", "Leopold", "Marisol", "Nikolai", "Octavia", "Peregrine",
    "Quillon", "Rosalind", "Sebastiano", "Thessaly", "Ulrich", "Valentina", "Wilhelmina", "Xaver",
    "Yolanda", "Zacharias", "Anneliese", "Bartholomew", "Clementine", "Desmond", "Esmeralda",
    "Fitzgerald", "Gwendolyn", "Hieronymus", "Imogen", "Jerome", "Leontine", "Maximilian",
    "Ottilie", "Philippa",
)  # fmt: skip
LAST_NAMES: Final = (
    "Abernathy", "Brinkerhoff", "Castellanos", "Drummond", "Eberhardt", "Fairweather", "Galbraith",
    "Holloway", "Ingersoll", "Jablonski", "Kowalczyk", "Lindqvist", "Mackintosh", "Nakamura",
    "Oyelaran", "Pemberton", "Quarshie", "Rasmussen", "Szczepanski", "Thorvaldsen", "Underhill",
    "Vasquez-Ortiz", "Whitcombe", "Yamamoto", "Zielinski", "Ashcombe", "Blackwood", "Chidambaram",
    "Delacroix", "Eisenberg", "Fonseca", "Gallagher", "Hadjipetrou", "Ivanova", "Janssens",
    "Kristiansen", "Lowenthal", "Montgomery", "Novak", "Okonkwo",
)  # fmt: skip

STREETS: Final = (
    "linden", "birch", "harbour", "mill", "orchard", "station", "meadow", "church", "willow", "quarry",
)  # fmt: skip

HEATING_TYPES: Final = ("gas boiler", "air-source heat pump", "district heating", "electric radiators")
TARIFFS: Final = ("fixed", "time-of-use", "dynamic hourly")
