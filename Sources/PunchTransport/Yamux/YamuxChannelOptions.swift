import NIOCore

/// `ChannelOption`s specific to yamux stream channels.
///
/// Stream channels also support `ChannelOptions.autoRead` (default `true`) and
/// `ChannelOptions.allowRemoteHalfClosure` (default `false`, as for NIO sockets).
public enum YamuxChannelOptions {
    /// The stream's yamux id (read-only): odd for streams the client opened, even for the server's.
    public static let streamID = Types.StreamIDOption()

    /// The option types behind ``YamuxChannelOptions``.
    public enum Types {
        /// The option type of ``YamuxChannelOptions/streamID``.
        public struct StreamIDOption: ChannelOption, Hashable, Sendable {
            /// The stream id.
            public typealias Value = UInt32

            /// Creates the option key.
            public init() {}
        }
    }
}

/// An outbound user event that resets a yamux stream at once (RST), the abrupt alternative to
/// `close()`.
///
/// ```swift
/// streamChannel.triggerUserOutboundEvent(YamuxStreamResetEvent(), promise: nil)
/// ```
///
/// Queued writes fail, the peer sees a reset, and the channel closes.
public struct YamuxStreamResetEvent: Hashable, Sendable {
    /// Creates the event.
    public init() {}
}
