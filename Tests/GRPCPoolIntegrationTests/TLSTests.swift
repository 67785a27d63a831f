import DemoServices
import Foundation
import GRPCCore
import GRPCPool
import GRPCPoolCoreBridge
import Testing

/// A CA, a server certificate for 127.0.0.1/localhost and a client certificate, made with openssl
/// in a temporary folder; and a second, unrelated CA.
struct TestPKI {
    let directory: String
    var ca: String { directory + "/ca.pem" }
    var otherCA: String { directory + "/other-ca.pem" }
    var serverChain: String { directory + "/server.pem" }
    var serverKey: String { directory + "/server.key" }
    var clientChain: String { directory + "/client.pem" }
    var clientKey: String { directory + "/client.key" }
    /// The server's key with a certificate from the CA that expired in 2020.
    var expiredServerChain: String { directory + "/expired.pem" }

    static func make() async throws -> TestPKI {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("grpcpool-pki-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let script = """
            set -e
            cd '\(directory)'
            openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj '/CN=GRPCPool Test CA' 2>/dev/null
            openssl req -x509 -newkey rsa:2048 -nodes -keyout other-ca.key -out other-ca.pem -days 2 -subj '/CN=Other CA' 2>/dev/null
            openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj '/CN=localhost' 2>/dev/null
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > server.ext
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext 2>/dev/null
            openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj '/CN=grpcpool-client' 2>/dev/null
            openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2 2>/dev/null
            touch index.txt
            echo 1000 > serial
            printf '[ca]\ndefault_ca=test\n[test]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\ndefault_md=sha256\npolicy=any\n[any]\ncommonName=supplied\n' > ca.cnf
            openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in server.csr -out expired.pem -notext \
                -startdate 20200101000000Z -enddate 20200102000000Z -extfile server.ext 2>/dev/null
            """
        let process = try ChildProcess("/bin/sh", ["-c", script], errors: .capture)
        let termination = await process.exit(timeLimit: .seconds(60))
        let output = termination == .exited(0) ? "" : await process.output(timeLimit: .seconds(1))
        let ended = termination?.description ?? "still running"
        try #require(termination == .exited(0), "openssl failed (\(ended)): \(output)")
        return TestPKI(directory: directory)
    }

    func remove() { try? FileManager.default.removeItem(atPath: self.directory) }
}

@Suite("TLS and mutual TLS")
struct TLSTests {
    func config(
        _ server: DemoServer,
        _ tls: PoolManager.TLS?,
        poolSize: Int = 1
    ) -> PoolManager.ServiceConfig {
        testConfig([server.target], poolSize: poolSize) { config in
            config.transportSecurity = tls.map { .tls($0) } ?? .plaintext
            config.whenNoneHealthy = .useAnyConnection  // let the call reach the core and say why
            config.enableRetries = false
            config.timeout = .seconds(5)
        }
    }

    func call(_ manager: PoolManager) async throws -> [UInt8] {
        try await manager.withConnection(to: "tls") { connection in
            try await connection.unary(method: echoUnary, request: [1, 2, 3]).message
        }
    }

    @Test("With the test CA the pool connects over TLS; with the wrong CA it fails and never falls back to plaintext")
    func serverTLS() async throws {
        let pki = try await TestPKI.make()
        defer { pki.remove() }
        let server = DemoServer(tls: .init(certificateChainPath: pki.serverChain, privateKeyPath: pki.serverKey))
        try await server.start()
        defer { Task { await server.stop() } }

        try await withPoolManager(["tls": config(server, .init(trustRoots: .file(path: pki.ca)))]) { manager in
            let reply = try await call(manager)
            #expect(reply == [1, 2, 3])
        }

        // Wrong CA: the handshake fails, and says so.
        try await withPoolManager(
            ["tls": config(server, .init(trustRoots: .file(path: pki.otherCA)))],
            waitForHealthy: false
        ) {
            manager in
            let error = await #expect(throws: RPCError.self) { try await call(manager) }
            #expect(error?.code == .unavailable)
            #expect(
                error.map { "\($0)".lowercased().contains("certificate") || "\($0)".contains("Handshake") } == true,
                "\(String(describing: error))"
            )
            #expect(server.requestCount == 1, "only the call over the trusted TLS connection reached the server")
        }

        // Hostname mismatch.
        try await withPoolManager(
            ["tls": config(server, .init(trustRoots: .file(path: pki.ca), serverHostnameOverride: "wrong.example"))],
            waitForHealthy: false
        ) { manager in
            let error = await #expect(throws: RPCError.self) { try await call(manager) }
            #expect(error?.code == .unavailable)
            #expect(
                error.map { "\($0)".contains("wrong.example") || "\($0)".lowercased().contains("peer name") } == true,
                "\(String(describing: error))"
            )
        }

        // Plaintext only when configured: a plaintext pool against the TLS server fails too.
        try await withPoolManager(["tls": config(server, nil)], waitForHealthy: false) { manager in
            await #expect(throws: RPCError.self) { try await call(manager) }
        }
        #expect(server.requestCount == 1)
    }

    @Test("An expired server certificate fails verification, the error says so, and nothing reaches the server")
    func expiredCertificate() async throws {
        let pki = try await TestPKI.make()
        defer { pki.remove() }
        let server = DemoServer(tls: .init(certificateChainPath: pki.expiredServerChain, privateKeyPath: pki.serverKey))
        try await server.start()
        defer { Task { await server.stop() } }

        try await withPoolManager(
            ["tls": config(server, .init(trustRoots: .file(path: pki.ca)))],
            waitForHealthy: false
        ) {
            manager in
            let error = await #expect(throws: RPCError.self) { try await call(manager) }
            #expect(error?.code == .unavailable)
            // libgrpc 1.51 reports the verification failure, not its reason (the reason, "certificate
            // has expired", goes to its log only).
            #expect(error.map { "\($0)".contains("certificate verify failed") } == true, "\(String(describing: error))")
            #expect(error.map { "\($0)".contains(server.target) } == true, "the error names the endpoint")
            let pool = try manager.pool(for: "tls")
            #expect(pool.metrics().healthyConnections == 0)
        }
        #expect(server.requestCount == 0)
    }

    @Test("Mutual TLS: a client certificate from the CA is accepted; without one the server refuses")
    func mutualTLS() async throws {
        let pki = try await TestPKI.make()
        defer { pki.remove() }
        let server = DemoServer(
            tls: .init(certificateChainPath: pki.serverChain, privateKeyPath: pki.serverKey, clientCAPath: pki.ca)
        )
        try await server.start()
        defer { Task { await server.stop() } }

        let withCertificate = PoolManager.TLS(
            trustRoots: .file(path: pki.ca),
            certificateChain: .file(path: pki.clientChain),
            privateKey: .file(path: pki.clientKey)
        )
        try await withPoolManager(["tls": config(server, withCertificate)]) { manager in
            let reply = try await call(manager)
            #expect(reply == [1, 2, 3])
        }
        try await withPoolManager(
            ["tls": config(server, .init(trustRoots: .file(path: pki.ca)))],
            waitForHealthy: false
        ) {
            manager in
            let error = await #expect(throws: RPCError.self) { try await call(manager) }
            #expect(error?.code == .unavailable)
        }
        #expect(server.requestCount == 1)
    }
}
