import ArgumentParser

@main
struct GRPCPoolCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "grpc-pool",
        abstract:
            "A gRPC client connection pool on gRPC's C core: demo, probe, interop, serve, bench, chaos, channelz.",
        subcommands: [Demo.self, Probe.self, Interop.self, Serve.self, Bench.self, Chaos.self, ChannelzCommand.self]
    )
}
