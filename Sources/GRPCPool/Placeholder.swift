internal import GRPCCore
