// The damon.v1.Registry service: agents register and hold their lease by heartbeat.
import type { AsyncHandlers } from '../common/grpc-server.js';
import type { RegistryService } from '../gen/damon/v1/damon.js';
import type { AgentRegistry } from './registry.js';

export function registryHandlers(registry: AgentRegistry): AsyncHandlers<typeof RegistryService> {
  return {
    async register(req) {
      return registry.register(req);
    },
    async heartbeat(req) {
      return registry.heartbeat(req);
    },
  };
}
