@_exported import PunchCrypto
@_exported import PunchPortMapping
@_exported import PunchTransport
@_exported import PunchWire
