import Testing

/// Tests that load the whole machine or compare latencies: `make test` runs them after the others,
/// one at a time, so that neither they nor the rest are slowed by each other.
@Suite("Run alone, one at a time", .serialized)
enum IsolatedTests {}
