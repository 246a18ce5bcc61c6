/// Sites (racks, data centres) by the address blocks their hosts use: which peers share a
/// host's site, so the swarm keeps what crosses a site's uplink to about one copy
/// (docs/design/sites.md). The longest matching prefix names an address's site.
public struct SiteMap: Sendable, Hashable {
    public struct Site: Sendable, Hashable {
        public var name: String
        public var blocks: [CIDR]
        public init(name: String, blocks: [CIDR]) {
            self.name = name
            self.blocks = blocks
        }
    }

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case malformed(String)
        case badName(String)
        case badBlock(String, CIDR.ParseError)
        case duplicateSite(String)
        case duplicateBlock(String)

        public var description: String {
            switch self {
            case .malformed(let t): "'\(t)': expected NAME=CIDR[,CIDR...], e.g. rack1=10.1.0.0/16"
            case .badName(let t): "'\(t)': a site name is 1-64 letters, digits, '-', '_' or '.'"
            case .badBlock(let t, _): "'\(t)' is not an address block such as 10.1.0.0/16"
            case .duplicateSite(let n): "site '\(n)' is given twice"
            case .duplicateBlock(let b): "address block \(b) is given to two sites"
            }
        }
    }

    public private(set) var sites: [Site] = []

    public init() {}

    public var isEmpty: Bool { sites.isEmpty }

    /// Adds one site from `NAME=CIDR[,CIDR...]` (the `--site` option's form).
    public mutating func add(parsing text: String) throws(ParseError) {
        let parts = text.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[1].isEmpty else { throw .malformed(text) }
        var blocks: [CIDR] = []
        for b in parts[1].split(separator: ",", omittingEmptySubsequences: false) {
            let t = String(b.trimmingSpaces)
            do throws(CIDR.ParseError) { blocks.append(try CIDR(parsing: t)) } catch { throw .badBlock(t, error) }
        }
        try add(Site(name: String(parts[0].trimmingSpaces), blocks: blocks))
    }

    public mutating func add(_ site: Site) throws(ParseError) {
        let nameOK = (1...64).contains(site.name.utf8.count)
            && site.name.unicodeScalars.allSatisfy { ("0"..."9").contains($0) || ("a"..."z").contains($0) || ("A"..."Z").contains($0) || "-_.".unicodeScalars.contains($0) }
        guard nameOK else { throw .badName(site.name) }
        guard !sites.contains(where: { $0.name == site.name }) else { throw .duplicateSite(site.name) }
        for b in site.blocks where sites.contains(where: { $0.blocks.contains(b) }) || site.blocks.filter({ $0 == b }).count > 1 {
            throw .duplicateBlock(b.description)
        }
        sites.append(site)
    }

    /// The site of `address`: the one with the longest block that holds it; nil outside every block.
    public func site(of address: IPAddress) -> String? {
        index(of: address).map { sites[$0].name }
    }

    /// Where in `sites` the site of `address` is (see `site(of:)`).
    public func index(of address: IPAddress) -> Int? {
        var best: (index: Int, length: Int)?
        for (i, s) in sites.enumerated() {
            for b in s.blocks where b.contains(address) && b.prefixLength128 > (best?.length ?? -1) {
                best = (i, b.prefixLength128)
            }
        }
        return best?.index
    }

    /// Whether `peer` shares the site of `own`: nil when our own address is in no site (the
    /// map says nothing about us); a peer outside every block counts as another site.
    public func sameSite(_ own: IPAddress, _ peer: IPAddress) -> Bool? {
        guard let mine = site(of: own) else { return nil }
        return site(of: peer) == mine
    }
}

extension Substring {
    fileprivate var trimmingSpaces: Substring {
        var s = self
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return s
    }
}
