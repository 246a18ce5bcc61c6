import BitTorrent
import Swarm

// `/status` documents, built on the engine's loop from the rules' snapshot.

extension PeerEngine {
    /// `/status` as JSON: caps, then each torrent's progress, rates and peers. On the loop.
    func statusJSON() -> String {
        loop.preconditionInEventLoop()
        let torrents = sessions.values.sorted { $0.metainfo.name < $1.metainfo.name }.map { $0.statusJSON() }
        // The node's own clock, so a client can turn two samples into an exact rate.
        let now = Double(loop.now.uptimeNanoseconds) / 1e9
        return "{\"version\":\"\(EngineConfig.version)\",\"uptimeSeconds\":\(now),\"ip\":\"\(config.ip)\",\"port\":\(listenPort),"
            + "\"rateCaps\":{\"up\":\(limiter.rate(.up)),\"down\":\(limiter.rate(.down))},"
            + "\"torrents\":[\(torrents.joined(separator: ","))]}"
    }
}

extension TorrentSession {
    /// One torrent's entry in `/status`.
    func statusJSON() -> String {
        let status = state.failure != nil ? "failed" : state.isComplete ? "seeding" : "downloading"
        let c = state.counters
        return "{\"name\":\(JSONText.quote(metainfo.name)),\"infoHash\":\"\(infoHash.hex)\",\"state\":\"\(status)\","
            + "\"progress\":\(state.progress),\"size\":\(metainfo.totalLength),\"left\":\(state.left),"
            + "\"downloaded\":\(c.downloaded),\"uploaded\":\(c.uploaded),"
            + "\"downRate\":\(Int(state.downRate.rate)),\"upRate\":\(Int(state.upRate.rate)),"
            + "\"peers\":\(state.peers.count),\"seeds\":\(state.peerCounts.seeds),\"path\":\(JSONText.quote(store.target))"
            + (state.failure.map { ",\"error\":\(JSONText.quote($0))" } ?? "") + "}"
    }
}
