import FuzzSupport
import NodeConfig

/// The node's YAML configuration (`node --config`, `--check-config`): parsing and validation
/// never trap or hang, whatever the text; errors carry a line.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    // The loader refuses bytes that are not UTF-8 before parsing; so does this.
    guard let yaml = String(validating: UnsafeBufferPointer(start: data, count: size), as: UTF8.self) else { return 0 }
    do {
        _ = try NodeConfiguration.parse(yaml: yaml, file: "/fuzz/node.yaml", baseDirectory: "/fuzz")
    } catch let errors as NodeConfigErrors {
        _ = "\(errors)"
    } catch {
        fatalError("parse threw \(type(of: error)), not NodeConfigErrors")
    }
    return 0
}
