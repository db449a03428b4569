#!/usr/bin/env node
// Thin entry point: the CLI is compiled from src/cli/ by `npm run build` (run by `npm ci`).
import { main } from '../dist/cli/main.js';

main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
