// Hardhat 3 configuration. Offline: the compiler is the pinned solc-js from npm
// (node_modules/solc/soljson.js), the same one scripts/solc wraps for py-solc-x, with the
// same settings (contracts/solc-settings.json) as scripts/build_contracts.py, so both produce identical bytecode.
import { createRequire } from "node:module";
import { defineConfig } from "hardhat/config";

const require = createRequire(import.meta.url);
const solcPackage = require("solc/package.json");

// evmVersion "paris" (no PUSH0) so the contracts deploy on consortium chains and L2s that
// lag mainnet; bytecodeHash "none" so source paths do not change the bytecode.
const SOLC_SETTINGS = require("./contracts/solc-settings.json");

export default defineConfig({
  solidity: {
    compilers: [
      {
        version: solcPackage.version,
        path: require.resolve("solc/soljson.js"),
        settings: SOLC_SETTINGS,
      },
    ],
  },
  paths: {
    sources: "./contracts",
    tests: { solidity: "./tests/contracts" },
    artifacts: "./build/hardhat/artifacts",
    cache: "./build/hardhat/cache",
  },
});
