import ServiceLifecycle

extension PortMapper: Service {
    /// Runs the mapper as a swift-service-lifecycle service: maps (``start()``), keeps the mapping
    /// alive until the service group shuts down gracefully (SIGTERM, SIGINT, or another service
    /// ending) or the task is cancelled, then removes the mapping (``shutdown()``).
    ///
    /// ```swift
    /// let mapper = PortMapper(configuration: .init(transport: .tcp, internalPort: 4001))
    /// let group = ServiceGroup(services: [mapper], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
    /// try await group.run()
    /// ```
    public func run() async throws {
        _ = try await start()
        // Returns at graceful shutdown; throws CancellationError when the task is cancelled.
        try? await gracefulShutdown()
        await shutdown()
    }
}
