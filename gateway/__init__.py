"""presence-gateway: in-store BLE + Wi-Fi presence, published durably over MQTT."""

__version__ = "0.1.0"
