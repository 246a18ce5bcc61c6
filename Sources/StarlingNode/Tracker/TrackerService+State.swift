import Bencode
import BitTorrent
import Storage
import Swarm
import Values
#if canImport(Glibc)
import Glibc
#endif

extension TrackerService {
    /// Unix time in seconds: the registry's clock (wall time, so persisted `lastSeen` survives restarts).
    public static func unixNow() -> Int64 { Int64(time(nil)) }
}
