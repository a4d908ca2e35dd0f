// Scheme actions on the synthetic operations' simulated processes: there is no memory to
// act on, so every action is counted as applied to the whole region and changes nothing
// (a simulated workload's access pattern does not react to pageout or cold). Schemes on
// synthetic sessions thus show what a scheme would select and how its quotas and
// watermarks pace it, not what the action would do.
import type { SchemeActuator } from '../schemes/actuator.js';

export class SyntheticActuator implements SchemeActuator {
  refusal(): string | null {
    return null;
  }

  apply(_targetId: number, start: number, end: number): number {
    return end - start;
  }

  release(): void {}
}
