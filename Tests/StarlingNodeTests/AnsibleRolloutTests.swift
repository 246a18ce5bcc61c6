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
        var env = ProcessInfo.processInfo.environment
        if env["STARLING_BIN"] == nil { env["STARLING_BIN"] = TestPaths.starling }
        // The script bounds its own steps; the timeout is the backstop.
        let run = try await TestScript.run(Self.script, environment: env, scratch: "ansible-rollout", timeout: 720)
        let output = run.output
        let times = output.split(separator: "\n").filter { $0.hasPrefix("ROLLOUT_TIMES") || $0.hasPrefix("push of") || $0.hasPrefix("  ") }
        print(times.joined(separator: "\n"))
        #expect(run.status == 0, "run_rollout_test.sh failed:\n\(output.suffix(6000))")
        #expect(output.contains("ROLLOUT_TIMES starling="))
    }
}
