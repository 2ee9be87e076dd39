-- nxops for Neovim 0.8 to 0.10: one nxops sidecar per Nx workspace (the
-- nearest folder with nx.json), for every buffer in it. :NxopsHealth shows the
-- health report; Critical health and failed processes come as vim.notify.
local handlers = {
  ['nxops/healthCheck'] = function(_, report)
    if report.changed and report.rating == 'Critical' then
      vim.notify('nxops: ' .. report.workspace .. ' is Critical: ' .. table.concat(report.reasons, '; '), vim.log.levels.WARN)
    end
  end,
  ['nxops/processFailure'] = function(_, event)
    vim.notify(('nxops: process "%s" failed (%s)'):format(event.name, event.reason), vim.log.levels.WARN)
  end,
}

local function health()
  for _, client in ipairs(vim.lsp.get_active_clients({ name = 'nxops' })) do
    client.request('nxops/health', vim.empty_dict(), function(err, report)
      if err then return vim.notify('nxops: ' .. err.message, vim.log.levels.ERROR) end
      local lines = { ('nxops health: %s (%d/100)'):format(report.rating, report.score) }
      for _, c in ipairs(report.components) do
        table.insert(lines, ('  %-10s %3d  %s'):format(c.name, c.score, table.concat(c.reasons, '; ')))
      end
      vim.notify(table.concat(lines, '\n'), vim.log.levels.INFO)
    end)
  end
end

vim.api.nvim_create_autocmd({ 'BufReadPost', 'BufNewFile' }, {
  callback = function(args)
    local name = vim.api.nvim_buf_get_name(args.buf)
    local found = vim.fs.find('nx.json', { upward = true, path = name ~= '' and vim.fs.dirname(name) or vim.fn.getcwd() })[1]
    if not found then return end
    vim.lsp.start({
      name = 'nxops',
      cmd = { 'nxops', 'serve', '--stdio' },
      root_dir = vim.fs.dirname(found),
      handlers = handlers,
      -- init_options = { settings = { ['cache.maxSize'] = '10GB' } },
      on_init = function(client)
        client.request('nxops/subscribe', { events = { 'healthCheck', 'processFailure' } }, function() end)
      end,
    }, { bufnr = args.buf })
  end,
})
vim.api.nvim_create_user_command('NxopsHealth', health, {})
