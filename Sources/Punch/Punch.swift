@_exported import PunchCrypto
@_exported import PunchDiscovery
@_exported import PunchTransport
@_exported import PunchWire
