// The version of fleetcache, from package.json: the CLI's --version, the agent's, the
// User-Agent of asset downloads. The bundles hold the file (2 KB), so the agent, sent to
// machines without the package, has it too.
import packageJson from '../package.json' with { type: 'json' };

export const VERSION: string = packageJson.version;
