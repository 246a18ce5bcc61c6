/// Why a tracker exchange failed.
public enum TrackerError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A request the tracker refuses to parse (server side); the text becomes the `failure reason`.
    case invalidRequest(String)
    /// A tracker response that is not valid bencode or misses required keys (client side).
    case invalidResponse(String)
    /// The tracker answered with a BEP 3 `failure reason`.
    case failure(String)

    public var description: String {
        switch self {
        case .invalidRequest(let m): return "invalid tracker request: \(m)"
        case .invalidResponse(let m): return "invalid tracker response: \(m)"
        case .failure(let m): return "tracker failure: \(m)"
        }
    }

    /// The bare message without the prefix, e.g. for a `failure reason`.
    public var message: String {
        switch self {
        case .invalidRequest(let m), .invalidResponse(let m), .failure(let m): return m
        }
    }
}
