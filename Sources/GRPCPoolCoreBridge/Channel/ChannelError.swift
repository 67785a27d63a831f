/// Why a channel could not be created.
package struct ChannelError: Error, Hashable, CustomStringConvertible {
    package enum Code: String, Sendable, Hashable {
        case invalidServiceConfig
        case invalidTarget
    }

    package var code: Code
    package var message: String

    package init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    package var description: String { "\(code): \"\(message)\"" }
}
