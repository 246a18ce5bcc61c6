import BitTorrent
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NodeConfig
import ServiceLifecycle
import Values

/// The HTTP tracker: `/announce`, `/scrape`, `/metrics`, `/healthz` on one TCP listener.
///
/// Request handling lives in `TrackerService`; this class owns the sockets and the
/// housekeeping loop (expiry sweeps, allow-list polling, periodic state saves). A `Service`:
/// it listens when run, and on graceful shutdown stops listening and saves its state.
public final class TrackerServer: Service, Sendable {
    public let service: TrackerService
    public var configuration: TrackerConfiguration { service.configuration }
    private let group: any EventLoopGroup
    private let ownsGroup: Bool
    private let running = NIOLockedValueBox<(channel: (any Channel)?, housekeeping: Task<Void, Never>?)>((nil, nil))
    private let connections = NIOLockedValueBox(0)
    private let logger: Logger

    public init(configuration: TrackerConfiguration, group: (any EventLoopGroup)? = nil,
                logger: Logger = Logger(label: "starling.tracker")) {
        service = TrackerService(configuration: configuration, logger: logger)
        self.logger = logger
        if let group {
            self.group = group
            ownsGroup = false
        } else {
            self.group = MultiThreadedEventLoopGroup(numberOfThreads: configuration.threads ?? System.coreCount)
            ownsGroup = true
        }
    }

    public func run() async throws {
        do {
            try await start()
        } catch {
            try? await shutdown()
            throw error
        }
        try? await gracefulShutdown()
        try await shutdown()
        logger.info("tracker stopped")
    }

    /// Loads state and the allow-list, binds, and starts housekeeping. Returns the bound address.
    @discardableResult
    public func start() async throws -> SocketAddress {
        do {
            try service.loadState()
        } catch {
            throw SettingError(.trackerStateFile, "\(error)")
        }
        if configuration.allowDir != nil {
            do { try service.refreshAllowList() } catch { throw SettingError(.trackerAllowDir, "\(error)") }
        }
        let config = configuration
        let service = self.service
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // Accept up to 64 connections per wake-up: most clients open one per announce.
            .serverChannelOption(.maxMessagesPerRead, value: 64)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] channel in
                let admitted = connections.withLockedValue { n -> Bool in
                    guard n < config.maxConnections else { return false }
                    n += 1
                    return true
                }
                // Over the cap: drop at once rather than queue work for a flood.
                guard admitted else { return channel.close() }
                channel.closeFuture.whenComplete { _ in self.connections.withLockedValue { $0 -= 1 } }
                return channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(IdleStateHandler(readTimeout: .seconds(Int64(config.idleTimeout))))
                    try sync.addHandler(ByteToMessageHandler(HTTPRequestDecoder(maxHeadSize: config.maxHeadSize)))
                    try sync.addHandler(HTTPRequestHandler(requestTimeout: .seconds(Int64(config.idleTimeout))) { request, remote in
                        service.handle(request, remote: remote)
                    })
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.bind(host: config.host, port: config.port).get()
        } catch {
            throw SettingError(.trackerListen, "cannot listen on \(IPEndpoint(parsing: config.host, defaultPort: UInt16(config.port), portZero: true).map(\.description) ?? config.host): \(error)")
        }
        let task = Task { [weak self] in
            guard let self else { return }
            await self.housekeeping()
        }
        running.withLockedValue { $0 = (channel, task) }
        let address = channel.localAddress
        let shown = address.map { a in (a.ipAddress.map { $0.contains(":") ? "[\($0)]" : $0 } ?? "?") + ":\(a.port ?? 0)" } ?? "?"
        logger.info("tracker listening on \(shown) (interval \(config.interval)s, peer timeout \(config.peerTimeout)s)")
        guard let address else { throw ChannelError.unknownLocalAddress }
        return address
    }

    /// The bound port (useful after binding port 0).
    public var port: Int? { running.withLockedValue { $0.channel?.localAddress?.port } }

    /// Open connections right now.
    public var connectionCount: Int { connections.withLockedValue { $0 } }

    /// Stops listening, saves state, and releases the event loops it created.
    public func shutdown() async throws {
        let (channel, task) = running.withLockedValue { r in
            defer { r = (nil, nil) }
            return r
        }
        task?.cancel()
        await task?.value
        try? await channel?.close()
        do {
            try service.saveState()
        } catch {
            logger.error("cannot save state to \(configuration.stateFile ?? "?"): \(error)")
            if ownsGroup { try? await group.shutdownGracefully() }
            throw error
        }
        if ownsGroup { try await group.shutdownGracefully() }
    }

    /// Runs off the event loops so a slow disk never stalls announces.
    private func housekeeping() async {
        let config = configuration
        var lastSave = ContinuousClock.now, lastPoll = ContinuousClock.now, lastExpire = ContinuousClock.now
        let expireEvery = Duration.seconds(max(1, min(config.peerTimeout / 4, 15)))
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(250))
            if Task.isCancelled { break }
            let now = ContinuousClock.now
            if lastExpire.duration(to: now) >= expireEvery {
                lastExpire = now
                let n = service.expire()
                if n > 0 { logger.debug("expired \(n) silent peers") }
            }
            if config.allowDir != nil, lastPoll.duration(to: now) >= .seconds(config.allowDirPollInterval) {
                lastPoll = now
                do { try service.refreshAllowList() } catch { logger.warning("allow-dir: \(error)") }
            }
            if config.stateFile != nil, lastSave.duration(to: now) >= .seconds(config.saveInterval) {
                lastSave = now
                do { try service.saveState() } catch { logger.error("cannot save state: \(error)") }
            }
        }
    }
}

extension IPAddress {
    /// The IP of a socket address (nil for a unix socket).
    public init?(socketAddress: SocketAddress) {
        switch socketAddress {
        case .v4(let a):
            var addr = a.address.sin_addr
            guard let ip = withUnsafeBytes(of: &addr, { IPAddress(bytes: $0) }) else { return nil }
            self = ip
        case .v6(let a):
            // A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d, which is exactly how
            // IPAddress holds IPv4: they land in `peers`, not `peers6`.
            var addr = a.address.sin6_addr
            guard let ip = withUnsafeBytes(of: &addr, { IPAddress(bytes: $0) }) else { return nil }
            self = ip
        default:
            return nil
        }
    }
}
