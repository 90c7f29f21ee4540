@_exported import PunchCrypto
@_exported import PunchDiscovery
@_exported import PunchHolePunch
@_exported import PunchRelay
@_exported import PunchPortMapping
@_exported import PunchTransport
@_exported import PunchWire
