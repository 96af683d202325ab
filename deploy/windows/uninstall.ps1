#Requires -Version 5.1
#Requires -RunAsAdministrator
<#
.SYNOPSIS
    Stops and removes transcriber's Windows services.

.DESCRIPTION
    Stops the chosen services (a running worker hands its recording back to the queue first) and
    removes them. With -Service all (the default) the venv and the service wrappers go too.
    .env, data, logs and models are kept unless -RemoveData; the recordings (WATCH_DIR) and the
    transcripts (OUTPUT_DIR) are never touched. A service removed on its own is remembered in
    services\install-options.json, so the next install.ps1 (an upgrade) does not register it again.
    See docs\windows.md.

.EXAMPLE
    .\uninstall.ps1
.EXAMPLE
    .\uninstall.ps1 -Service flower
.EXAMPLE
    .\uninstall.ps1 -Service beat
    Beat moves to another machine: there, install.ps1 -NoBeat:$false.
.EXAMPLE
    .\uninstall.ps1 -RemoveData
    Everything but the recordings and transcripts; asks before deleting .env, data, logs and models.
#>
[CmdletBinding(SupportsShouldProcess = $true)]
param(
    [string]$InstallDir = 'C:\app',
    [ValidateSet('worker', 'beat', 'watch', 'flower', 'metrics', 'all')]
    [string[]]$Service = @('all'),
    # Also delete .env, data (the embedded database and broker), logs and models. Asks first unless -Force.
    [switch]$RemoveData,
    [switch]$Force
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$InstallDir = $ExecutionContext.SessionState.Path.GetUnresolvedProviderPathFromPSPath($InstallDir)
$servicesDir = Join-Path $InstallDir 'services'
$everything = $Service -contains 'all'
if ($RemoveData -and -not $everything) { throw '-RemoveData removes the whole installation: use it with -Service all (the default).' }
$roles = if ($everything) { @('metrics', 'flower', 'watch', 'beat', 'worker') } else { $Service }

foreach ($role in $roles) {
    $id = "transcriber-$role"
    $registered = Get-Service -Name $id -ErrorAction SilentlyContinue
    if ($registered -and $PSCmdlet.ShouldProcess($id, 'Stop and remove the service')) {
        if ($registered.Status -ne 'Stopped') {
            Write-Host "stopping $id (a running recording goes back to the queue; up to 90 s)"
            Stop-Service -Name $id
        }
        Write-Host "removing service $id"
        & sc.exe delete $id | Out-Host
        if ($LASTEXITCODE -ne 0) { throw "sc.exe delete $id failed (exit code $LASTEXITCODE)" }
        for ($wait = 0; $wait -lt 10 -and (Get-Service -Name $id -ErrorAction SilentlyContinue); $wait++) { Start-Sleep -Seconds 1 }
        if (Get-Service -Name $id -ErrorAction SilentlyContinue) {
            Write-Warning "$id is marked for deletion; Windows removes it once every program that has it open (services.msc, Event Viewer) is closed."
        }
    }
    foreach ($file in @("$id.exe", "$id.xml")) {
        $path = Join-Path $servicesDir $file
        if (Test-Path -LiteralPath $path) { Remove-Item -LiteralPath $path -Force }
    }
}
if (-not $everything) {
    # In step with install-options.json: an upgrade must not bring back a beat that moved to another machine.
    $optionsFile = Join-Path $servicesDir 'install-options.json'
    $venvPython = Join-Path $InstallDir 'venv\Scripts\python.exe'
    if ((Test-Path -LiteralPath $optionsFile) -and -not $WhatIfPreference) {
        if (-not (Test-Path -LiteralPath $venvPython)) {
            throw "$venvPython is missing, so $optionsFile still lists $($roles -join ', '): re-run install.ps1 with -NoBeat, -NoWatcher, -NoWorker, -WithFlower:`$false or -WithMetrics:`$false."
        }
        $saved = $ErrorActionPreference
        $ErrorActionPreference = 'Continue'  # PowerShell 5.1 turns a native program's stderr into errors
        try {
            $output = & $venvPython (Join-Path $PSScriptRoot 'winsvc.py') forget --options $optionsFile @roles 2>&1
            $code = $LASTEXITCODE
        }
        finally {
            $ErrorActionPreference = $saved
        }
        if ($code -ne 0) { throw "Could not update ${optionsFile}: $output" }
        Write-Host "remembered in ${optionsFile}: install.ps1 does not register $($roles -join ', ') again"
    }
    return
}

foreach ($dir in @('venv', 'services')) {
    $path = Join-Path $InstallDir $dir
    if ((Test-Path -LiteralPath $path) -and $PSCmdlet.ShouldProcess($path, 'Remove')) {
        Write-Host "removing $path"
        Remove-Item -LiteralPath $path -Recurse -Force
    }
}

$data = @(@('.env', 'data', 'logs', 'models') | ForEach-Object { Join-Path $InstallDir $_ } | Where-Object { Test-Path -LiteralPath $_ })
$question = "Delete $($data -join ', ')? The settings, the embedded database and the logs cannot be recovered."
if ($RemoveData -and $data.Count -gt 0 -and $PSCmdlet.ShouldProcess(($data -join ', '), 'Delete') -and
    ($Force -or $PSCmdlet.ShouldContinue($question, 'transcriber uninstall'))) {
    foreach ($path in $data) {
        Write-Host "removing $path"
        Remove-Item -LiteralPath $path -Recurse -Force
    }
    $data = @()
}
if ((Test-Path -LiteralPath $InstallDir) -and -not $WhatIfPreference -and -not (Get-ChildItem -LiteralPath $InstallDir -Force | Select-Object -First 1)) {
    Remove-Item -LiteralPath $InstallDir -Force
}
Write-Host 'transcriber services removed.'
if ($data.Count -gt 0) { Write-Host "Kept (remove with -RemoveData): $($data -join ', ')" }
Write-Host 'Recordings (WATCH_DIR) and transcripts (OUTPUT_DIR) are never removed by this script.'
