import BitTorrent
import Swarm
import Values

extension Fleet {
    /// Carries out what a host's membership decided: datagrams, and peers for its dialler.
    mutating func gossip(_ h: Int, _ directives: [GossipDirective]) {
        var found: [PeerAddress] = []
        for d in directives {
            switch d {
            case .send(let m, let to):
                guard let dest = index(of: to.ip.description) else { continue }
                schedule(.datagram(to: dest, m, from: hosts[h].gossipEndpoint), at: now + delay(h, dest))
            case .peerDiscovered(_, let p):
                found.append(PeerAddress(host: p.address.description, port: Int(p.port)))
            case .broadcast, .memberAdded, .memberUpdated, .memberRemoved:
                break
            }
        }
        if !found.isEmpty {
            learnSiteMates(h, found)
            _ = hosts[h].dial.add(found)
            dialCandidates(h)
        }
    }

    /// One-way latency from host `a` to host `b`: the hosts' links, and the sites' uplinks between them.
    private func delay(_ a: Int, _ b: Int) -> UInt64 {
        scenario.latency + (hosts[a].site != hosts[b].site ? scenario.siteLatency : 0)
    }

    // MARK: tracker and connections

    mutating func announce(_ h: Int) {
        let host = hosts[h]
        let left = host.state.left
        let request = AnnounceRequest(infoHash: infoHash, peerID: host.peerID, port: UInt16(host.address.port),
                                      downloaded: 0, left: left, event: host.doneAt == nil ? .started : nil)
        guard let ip = IPAddress(host.address.host),
              let result = try? tracker.announce(request, address: ip, now: Int64(now / 1_000_000_000), using: &random) else { return }
        let addresses = result.peers.map { PeerAddress(host: $0.host, port: Int($0.port)) }
        learnSiteMates(h, addresses)
        _ = hosts[h].dial.add(addresses)
        dialCandidates(h)
    }

    /// Site k's address block when hosts know the site map.
    static func siteBlock(_ k: Int) -> String { "10.\(k + 1).0.0/16" }

    /// Tells host `h`'s rules which of these candidates share its site, as `PeerEngine` does.
    private mutating func learnSiteMates(_ h: Int, _ addresses: [PeerAddress]) {
        guard scenario.siteMap else { return }
        let mates = addresses.filter { a in index(of: a.host).map { hosts[$0].site == hosts[h].site } ?? false }
        if !mates.isEmpty { hosts[h].state.siteMembersKnown(mates.map(\.host)) }
    }

    private func index(of host: String) -> Int? {
        if scenario.siteMap { return hostByAddress[host] }
        let parts = host.split(separator: ".").compactMap { Int($0) }
        guard parts.count == 4 else { return nil }
        let i = parts[1] << 16 | parts[2] << 8 | parts[3]
        return i < hosts.count ? i : nil
    }

    mutating func dialCandidates(_ h: Int) {
        let state = hosts[h].state
        let budget = state.dialBudget(dialling: hosts[h].dial.inProgress)
        guard budget > 0 else { return }
        let connected = state.listenAddresses
        let due = hosts[h].dial.due(now: now, budget: budget) { connected.contains($0) || state.isBanned($0.host) }
        for address in due {
            guard let to = index(of: address.host) else { continue }
            // The handshake reaches the other side after a round trip and a half.
            schedule(.connect(from: h, to: to, epoch: hosts[h].epoch), at: now + 3 * delay(h, to) + scenario.step)
        }
    }

    mutating func connect(_ from: Int, _ to: Int) {
        let target = hosts[to].address
        defer { if hosts[from].alive { dialCandidates(from) } }
        guard hosts[from].alive, hosts[to].alive else {
            hosts[from].dial.dialEnded(target, connected: false)
            return
        }
        hosts[from].dial.dialEnded(target, connected: true)
        let c = conns.count
        let sameSite = scenario.siteMap ? hosts[from].site == hosts[to].site : nil
        let inbound = TorrentState.Arrival(remote: PeerAddress(host: hosts[from].address.host, port: 30000 + c % 30000),
                                           outbound: false, peerID: hosts[from].peerID, fast: true, sameSite: sameSite)
        let (acceptedAtB, actionsB) = hosts[to].state.admit(inbound, now: now)
        guard case .admitted(let idAtB) = acceptedAtB else { return perform(to, actionsB) }
        let outbound = TorrentState.Arrival(remote: target, outbound: true, peerID: hosts[to].peerID, fast: true, sameSite: sameSite)
        let (acceptedAtA, actionsA) = hosts[from].state.admit(outbound, now: now)
        conns.append(Conn(a: from, b: to, idAtA: -1, idAtB: idAtB))
        links.append(Link(from: from, to: to, idAtTo: idAtB, open: true))
        links.append(Link(from: to, to: from, idAtFrom: idAtB, open: true))
        readAt += [Self.unread, Self.unread]
        hosts[to].setOut(2 * c + 1, for: idAtB)
        perform(to, actionsB)
        guard case .admitted(let idAtA) = acceptedAtA else {
            perform(from, actionsA)
            return close(c)
        }
        conns[c].idAtA = idAtA
        links[2 * c].idAtFrom = idAtA
        links[2 * c + 1].idAtTo = idAtA
        hosts[from].setOut(2 * c, for: idAtA)
        perform(from, actionsA)
    }

    /// Both ends learn the connection is gone, as NIO's channelInactive tells each shell.
    private mutating func close(_ c: Int) {
        guard conns[c].open else { return }
        conns[c].open = false
        links[2 * c] = Link()
        links[2 * c + 1] = Link()
        readAt[2 * c] = Self.closed
        readAt[2 * c + 1] = Self.closed
        let conn = conns[c]
        for (h, id) in [(conn.a, conn.idAtA), (conn.b, conn.idAtB)] where id >= 0 {
            hosts[h].setOut(nil, for: id)
            if hosts[h].alive { perform(h, hosts[h].state.disconnected(id, now: now)) }
        }
    }

    // MARK: actions

    mutating func perform(_ h: Int, _ actions: [TorrentState.Action]) {
        for action in actions {
            switch action {
            case .send(.bitfield(let bytes), let id):
                bitfieldKey += 1
                bitfields[bitfieldKey] = bytes
                enqueue(from: h, to: id, Item(bytes: 5 + bytes.count, bitfieldKey: bitfieldKey))
            case .send(.have(let piece), let id) where rules.haveFlushDelay > 0:
                let m = TorrentState.Message.have(piece: piece)
                hold(from: h, to: id, Item(bytes: Self.wireLength(m), message: m))
            case .send(let m, let id):
                enqueue(from: h, to: id, Item(bytes: Self.wireLength(m), message: m))
            case .serve(let req, let id):
                if h == 0 {
                    let block = req.piece * (layout.pieceLength / layout.blockLength) + req.begin / layout.blockLength
                    if originSent.insert(block).inserted { sample.fresh += Double(req.length) }
                }
                enqueue(from: h, to: id, Item(block: req, corrupt: hosts[h].liar))
                hosts[h].uploaded += Int64(req.length)
            case .assemble:
                break
            case .check(let piece, let digests):
                schedule(.checked(h, piece: piece, digests: digests, epoch: hosts[h].epoch), at: now)
            case .finalize:
                perform(h, hosts[h].state.finalized(now: now))
                if hosts[h].doneAt == nil {
                    hosts[h].doneAt = now
                    if !hosts[h].liar { completed += 1 }
                    if scenario.trackerDead {
                        hosts[h].gossip?.announce(torrents: [GossipTorrent(infoHash: infoHash, complete: true)], peerPort: UInt16(Defaults.portRange.lowerBound))
                    } else {
                        announce(h)
                    }
                    if let k = scenario.killSeederAfterCompleteOf, completed >= k, hosts[0].alive { kill(0) }
                }
            case .close(let id, _):
                if let l = hosts[h].out(to: id) { close(l >> 1) }
            case .wake(let after):
                schedule(.timer(.wake, h, hosts[h].epoch), at: now + after)
            case .failed, .log:
                break
            }
        }
    }

    mutating func kill(_ h: Int) {
        hosts[h].alive = false
        hosts[h].gossip = nil
        for c in hosts[h].conn.values { close(c) }
        hosts[h].conn.removeAll()
        hosts[h].out.removeAll()
        hosts[h].heldLinks.removeAll()
        hosts[h].flushArmed = false
    }

    private mutating func enqueue(from h: Int, to id: Int, _ item: Item) {
        guard let l = hosts[h].out(to: id) else { return }
        links[l].push(item)
        activate(l)
    }

    /// A have waits as `TorrentSession`'s do: for the next item to the same peer, or for the
    /// host's flush timer, set by the first have that waits.
    private mutating func hold(from h: Int, to id: Int, _ item: Item) {
        guard let l = hosts[h].out(to: id) else { return }
        if links[l].held == 0 { hosts[h].heldLinks.append(l) }
        links[l].hold(item)
        guard !hosts[h].flushArmed else { return }
        hosts[h].flushArmed = true
        schedule(.timer(.haveFlush, h, hosts[h].epoch), at: now + rules.haveFlushDelay)
    }

    mutating func flushHeld(_ l: Int) {
        links[l].release()
        activate(l)
    }

    private mutating func activate(_ l: Int) {
        guard !links[l].active else { return }
        links[l].active = true
        network.active.append(l)
    }
}
