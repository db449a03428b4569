// Runs the CLI from source (the tests do not depend on a build of dist/).
import { main } from '../../src/cli/main.js';

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
