import ArgumentParser
import BitTorrent
import Values

/// `--site NAME=CIDR[,CIDR]`, shared by the tracker, `seed` and `peer`: the same map
/// everywhere, so each host and the tracker agree on who shares a site.
struct SiteOptions: ParsableArguments {
    @Option(name: .customLong("site"), help: ArgumentHelp(
        "A site (rack, data centre) and its address blocks, e.g. rack1=10.1.0.0/16; repeatable. "
            + "Peers in one site fetch what crosses its uplink about once (docs/design/sites.md).",
        valueName: "name=cidr[,cidr]"))
    var sites: [String] = []

    /// The parsed map; a bad entry is a one-line error naming the option.
    func map() throws -> SiteMap {
        var m = SiteMap()
        for s in sites {
            do throws(SiteMap.ParseError) { try m.add(parsing: s) } catch { throw CLIError("--site \(error)") }
        }
        return m
    }
}
