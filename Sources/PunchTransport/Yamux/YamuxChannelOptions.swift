import NIOCore

/// `ChannelOption`s specific to yamux stream channels.
///
/// Stream channels also support `ChannelOptions.autoRead` (default `true`) and
/// `ChannelOptions.allowRemoteHalfClosure` (default `false`, as for NIO sockets).
public enum YamuxChannelOptions {
    /// The stream's yamux id (read-only): odd for streams the client opened, even for the server's.
    public static let streamID = Types.StreamIDOption()

    /// The stream's receive window in bytes (read-only): ``YamuxConfiguration/streamReceiveWindow``
    /// at first, grown by auto-tuning (``YamuxConfiguration/maximumStreamReceiveWindow``); after
    /// the stream closed, its last window.
    public static let receiveWindow = Types.ReceiveWindowOption()

    /// The address the stream reports as its ``Channel/remoteAddress`` instead of its connection's
    /// (settable; `nil`, the default, reports the connection's). For protocols that show their peer
    /// by address only: PunchGRPC sets `/p2p/PEERID` as a Unix path so that gRPC's
    /// `ServerContext.remotePeer` names the authenticated peer.
    public static let reportedRemoteAddress = Types.ReportedRemoteAddressOption()

    /// The option types behind ``YamuxChannelOptions``.
    public enum Types {
        /// The option type of ``YamuxChannelOptions/reportedRemoteAddress``.
        public struct ReportedRemoteAddressOption: ChannelOption, Hashable, Sendable {
            /// The address to report, or `nil` for the connection's.
            public typealias Value = SocketAddress?

            /// Creates the option key.
            public init() {}
        }

        /// The option type of ``YamuxChannelOptions/streamID``.
        public struct StreamIDOption: ChannelOption, Hashable, Sendable {
            /// The stream id.
            public typealias Value = UInt32

            /// Creates the option key.
            public init() {}
        }

        /// The option type of ``YamuxChannelOptions/receiveWindow``.
        public struct ReceiveWindowOption: ChannelOption, Hashable, Sendable {
            /// The window in bytes.
            public typealias Value = Int

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
