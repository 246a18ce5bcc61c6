import Foundation
import Testing

/// ansible/rollout.yml over real SSH: tests/ansible/run_rollout_test.sh builds 12 hosts in
/// network namespaces (each with its own sshd, links shaped to 100mbit), pushes a 32 MiB
/// artifact to 11 peers with rollout.yml, checks every sha256, that the processes stopped
/// and the scratch files are gone, reruns with one host's sshd stopped (that host must be
/// named, the others must finish), and times `ansible -m copy` of the same file.
@Suite(.serialized)
struct AnsibleRolloutTests {
    static let script = TestPaths.packageRoot.appendingPathComponent("tests/ansible/run_rollout_test.sh").path
    static let ready = getuid() == 0 && TestPaths.which("ip") != nil
        && FileManager.default.isExecutableFile(atPath: "/usr/sbin/sshd")
        && TestPaths.which("ansible-playbook") != nil && TestPaths.which("ansible") != nil

    @Test(.enabled(if: ready, "needs root, iproute2, openssh-server and ansible-core"))
    func rolloutOverSSHInNamespaces() async throws {
        let dir = try TestPaths.scratch("ansible-rollout")
        defer { try? FileManager.default.removeItem(at: dir) }
        let log = dir.appendingPathComponent("rollout-test.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        defer { try? handle.close() }
        var env = ProcessInfo.processInfo.environment
        if env["STARLING_BIN"] == nil { env["STARLING_BIN"] = TestPaths.starling }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = [Self.script]
        p.environment = env
        p.standardOutput = handle
        p.standardError = handle
        p.standardInput = FileHandle.nullDevice
        try p.run()
        // The script bounds its own steps; this is the backstop (SIGTERM runs its cleanup trap).
        let deadline = Date().addingTimeInterval(720)
        while p.isRunning && Date() < deadline { try await Task.sleep(nanoseconds: 200_000_000) }
        if p.isRunning {
            kill(p.processIdentifier, SIGTERM)
            p.waitUntilExit()
        }
        let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        let times = output.split(separator: "\n").filter { $0.hasPrefix("ROLLOUT_TIMES") || $0.hasPrefix("push of") || $0.hasPrefix("  ") }
        print(times.joined(separator: "\n"))
        #expect(p.terminationStatus == 0, "run_rollout_test.sh failed:\n\(output.suffix(6000))")
        #expect(output.contains("ROLLOUT_TIMES starling="))
    }
}
