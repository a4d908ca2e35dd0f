// The damon.v1.Registry service: agents register and hold their lease by heartbeat.
import type { AsyncHandlers } from '../common/grpc-server.js';
import { callerOf } from '../common/grpc-access.js';
import type { RegistryService } from '../gen/damon/v1/damon.js';
import type { AgentRegistry } from './registry.js';

/** `epoch`: the leader's, told to agents so that they refuse a deposed leader's calls. */
export function registryHandlers(registry: AgentRegistry, epoch: () => bigint): AsyncHandlers<typeof RegistryService> {
  return {
    async register(req, call) {
      return { ...(await registry.register(req, callerOf(call))), epoch: epoch() };
    },
    async heartbeat(req, call) {
      return { ...registry.heartbeat(req, callerOf(call)), epoch: epoch() };
    },
  };
}
