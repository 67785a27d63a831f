extension PoolManager {
    /// Where a service runs: one `host:port`, or a target naming one or more addresses.
    public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
        /// The host name or IP address (empty for a raw target).
        public var host: String
        /// The port (0 for a raw target).
        public var port: Int
        /// A target naming the service's addresses (`dns:///svc:443`,
        /// `ipv4:10.0.0.1:50051,10.0.0.2:50051`, `unix:/run/svc.sock`), or `nil` to use `host:port`.
        public var target: String?

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
            self.target = nil
        }

        /// A target in gRPC's name syntax. The pool finds the addresses it names (looking `dns:`
        /// names up itself, again and again) and spreads its connections over them
        /// (``PoolManager/Discovery``); each connection connects to one address.
        public init(target: String) {
            self.host = ""
            self.port = 0
            self.target = target
        }

        /// Parses `host:port`, `[v6]:port`, or a core target with a scheme (`dns:///…`, `ipv4:…`,
        /// `ipv6:…`, `unix:…`, used as is); `nil` when the text is none of these.
        public init?(parsing text: String) {
            let schemes = ["dns:", "ipv4:", "ipv6:", "unix:"]
            if text.contains("://") || schemes.contains(where: text.hasPrefix) {
                self.init(target: text)
                return
            }
            guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]) else {
                return nil
            }
            var host = String(text[..<colon])
            if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            self.init(host: host, port: port)
        }

        /// The endpoint as configured: its target, or `host:port`.
        public var description: String {
            if let target { return target }
            return self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)"
        }
    }

    /// Plaintext or TLS.
    public struct TransportSecurity: Sendable, Hashable {
        enum Mode: Sendable, Hashable {
            case plaintext
            case tls(TLS)
        }

        let mode: Mode

        /// Plaintext HTTP/2: only for trusted networks and tests.
        public static let plaintext = TransportSecurity(mode: .plaintext)

        /// TLS, optionally mutual.
        public static func tls(_ tls: TLS = TLS()) -> TransportSecurity {
            TransportSecurity(mode: .tls(tls))
        }
    }

    /// TLS settings.
    public struct TLS: Sendable, Hashable {
        /// Certificates to trust; `nil` uses the core's default roots.
        public var trustRoots: CertificateSource?
        /// The client certificate chain, for mutual TLS.
        public var certificateChain: CertificateSource?
        /// The client private key, for mutual TLS.
        public var privateKey: CertificateSource?
        /// The name to check the server's certificate against instead of the host.
        public var serverHostnameOverride: String?

        public init(
            trustRoots: CertificateSource? = nil,
            certificateChain: CertificateSource? = nil,
            privateKey: CertificateSource? = nil,
            serverHostnameOverride: String? = nil
        ) {
            self.trustRoots = trustRoots
            self.certificateChain = certificateChain
            self.privateKey = privateKey
            self.serverHostnameOverride = serverHostnameOverride
        }
    }

    /// PEM text, inline or in a file.
    public enum CertificateSource: Sendable, Hashable {
        case pem(String)
        case file(path: String)
    }
}
