internal import CGRPCCore

/// How a channel secures its connections.
package enum ChannelCredentials: Sendable, Hashable {
    /// Plaintext HTTP/2. Used only when the configuration asks for it explicitly.
    case insecure
    /// TLS. `rootCertificates` is PEM text (`nil`: the core's default roots); a client
    /// certificate chain and key (PEM) turn on mutual TLS.
    case tls(rootCertificates: String?, certificateChain: String?, privateKey: String?)

    /// A new `grpc_channel_credentials*`; the caller releases it after creating the channel.
    func makeCore() -> OpaquePointer {
        switch self {
        case .insecure:
            return grpc_insecure_credentials_create()
        case .tls(let roots, let chain, let key):
            return withOptionalCString(roots) { roots in
                if let chain, let key {
                    return chain.withCString { chain in
                        key.withCString { key in
                            var pair = grpc_ssl_pem_key_cert_pair(private_key: key, cert_chain: chain)
                            return grpc_ssl_credentials_create(roots, &pair, nil, nil)
                        }
                    }
                }
                return grpc_ssl_credentials_create(roots, nil, nil, nil)
            }!
        }
    }
}

private func withOptionalCString<R>(_ string: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let string else { return body(nil) }
    return string.withCString { body($0) }
}
