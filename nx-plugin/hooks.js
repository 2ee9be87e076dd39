// `@nxops/nx-plugin/hooks` (see src/hooks-plugin.ts): the opt-in task hooks.
module.exports = require('./dist/hooks-plugin.js');
