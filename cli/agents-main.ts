// `damon-fleet agents`: the agents the controller knows, with the operations each host
// supports and their health (the lease their heartbeats hold).
import { AgentInfo } from '../gen/damon/v1/damon.js';
import { quoted } from '../common/log.js';
import { CONNECTION_OPTIONS, CONNECTION_USAGE, parseConnection, type ConnectionValues } from './connection-options.js';
import { ControllerConnection } from './controller-connection.js';
import { Exit, UsageError } from './exit-codes.js';
import { parseCommandLine, print, printJson, processIo, runCommand, type Io } from './command.js';
import { agentsTable } from './fleet-text.js';

export const USAGE = `usage: damon-fleet agents list [options]

  Every agent that registered: its host, the address the controller calls, its health
  (live while its heartbeats keep its lease; "lease expired" once they stopped), when it
  last sent one, the operations its host supports (best first) and why the others are
  unavailable, and its instance (new at every agent start).

${CONNECTION_USAGE}

Exit codes: 0 ok, 1 failure, 2 usage, 5 credential refused, 6 no controller available.`;

export async function main(argv: string[], io: Io = processIo): Promise<number> {
  const [sub, ...args] = argv;
  return runCommand(sub && !sub.startsWith('-') ? `agents ${sub}` : 'agents', USAGE, argv, io, async () => {
    if (sub !== 'list') throw new UsageError(sub && !sub.startsWith('-') ? `unknown command ${quoted(sub)} (list)` : 'a command is required (list)');
    const { values, positionals } = parseCommandLine(args, CONNECTION_OPTIONS);
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${quoted(positionals[0])}`);
    const v = values as ConnectionValues;
    const conn = new ControllerConnection(parseConnection(v));
    try {
      const { agents } = await conn.call('listAgents', {});
      if (v.json) printJson(io, { agents: agents.map((a) => AgentInfo.toJSON(a)) });
      else print(io, agentsTable(agents));
    } finally {
      conn.close();
    }
    return Exit.Ok;
  });
}
