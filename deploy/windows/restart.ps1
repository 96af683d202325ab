#Requires -Version 5.1
#Requires -RunAsAdministrator
<#
.SYNOPSIS
    Restarts transcriber's Windows services (or starts them) and shows that they stay up.

.DESCRIPTION
    Settings are read once, when a service starts: after editing .env, restart the services
    it concerns (TASK_TIMEOUT_SECONDS -> worker, METRICS_PORT -> metrics; when unsure, all). A worker that is
    transcribing hands its recording back to the queue with its progress kept (up to 90 s),
    then starts again. Each service must report Running and keep the same process for
    -SettleSeconds; otherwise the end of its log is shown and the exit code is 1. Then it shows
    what each service found when it checked its folders at its start, as its own account
    (transcriber doctor --as-service), and exits 1 if one cannot use a folder it needs.

.EXAMPLE
    .\restart.ps1
.EXAMPLE
    .\restart.ps1 -Service worker
#>
[CmdletBinding()]
param(
    [ValidateSet('worker', 'beat', 'watch', 'flower', 'metrics', 'all')]
    [string]$Service = 'all',
    # How long each must stay up after starting (a bad setting makes a service exit within seconds).
    [ValidateRange(0, 600)]
    [int]$SettleSeconds = 15
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function Get-ServiceInfo([string]$Name) {
    return Get-CimInstance -ClassName Win32_Service -Filter "Name='$Name'"
}

function Get-InstallDir([string]$Name) {
    $wrapperExe = (Get-ServiceInfo $Name).PathName.Trim().Trim('"')  # <install folder>\services\<name>.exe
    return Split-Path -Parent (Split-Path -Parent $wrapperExe)
}

function Invoke-Rotate([string]$Name) {
    $installDir = Get-InstallDir $Name
    $log = Join-Path $installDir "logs\$Name.wrapper.log"
    $python = Join-Path $installDir 'venv\Scripts\python.exe'
    if (-not (Test-Path -LiteralPath $log) -or -not (Test-Path -LiteralPath $python)) { return }
    $saved = $ErrorActionPreference
    $ErrorActionPreference = 'Continue'  # PowerShell 5.1 turns a native program's stderr into errors
    try {
        & $python (Join-Path $PSScriptRoot 'winsvc.py') rotate $log 2>&1 | ForEach-Object { Write-Host "    $_" }
    }
    finally {
        $ErrorActionPreference = $saved
    }
}

$roles = if ($Service -eq 'all') { @('worker', 'beat', 'watch', 'flower', 'metrics') } else { @($Service) }
$names = @(foreach ($role in $roles) {
        $name = "transcriber-$role"
        if (Get-Service -Name $name -ErrorAction SilentlyContinue) { $name }
        elseif ($Service -ne 'all') { throw "$name is not installed on this machine (see install.ps1)." }
    })
if ($names.Count -eq 0) { throw 'No transcriber service is installed on this machine: run install.ps1 first.' }

$startedPid = @{}
$problem = @{}
foreach ($name in $names) {
    try {
        if ((Get-Service -Name $name).Status -ne 'Stopped') {
            Write-Host "stopping $name"
            Stop-Service -Name $name  # WinSW sends Ctrl+C and kills after 90 s
        }
        Invoke-Rotate $name  # WinSW 2 appends to <service>.wrapper.log for ever: rolled while it is stopped
        Write-Host "starting $name"
        Start-Service -Name $name
        (Get-Service -Name $name).WaitForStatus('Running', [TimeSpan]::FromSeconds(60))
        $startedPid[$name] = (Get-ServiceInfo $name).ProcessId
    }
    catch {
        $problem[$name] = $_.Exception.Message
    }
}

if ($SettleSeconds -gt 0) {
    Write-Host "waiting $SettleSeconds s to see that they stay up"
    Start-Sleep -Seconds $SettleSeconds
}

$rows = foreach ($name in $names) {
    $info = Get-ServiceInfo $name
    # A service that exited and was restarted by Windows meanwhile has a new process id.
    if (-not $problem.ContainsKey($name) -and ($info.State -ne 'Running' -or $info.ProcessId -ne $startedPid[$name])) {
        $problem[$name] = 'did not stay running'
    }
    $wrapperExe = $info.PathName.Trim().Trim('"')  # <install folder>\services\<name>.exe
    $logs = Join-Path (Split-Path -Parent (Split-Path -Parent $wrapperExe)) 'logs'
    [pscustomobject]@{
        Service   = $name
        State     = $info.State
        StartMode = $info.StartMode
        Account   = $info.StartName
        Result    = $(if ($problem.ContainsKey($name)) { 'FAILED' } else { 'ok' })
        Log       = Join-Path $logs "$name.err.log"
    }
}
Write-Host ($rows | Format-Table -AutoSize | Out-String -Width 240)

foreach ($row in $rows | Where-Object { $_.Result -ne 'ok' }) {
    Write-Warning "$($row.Service): $($problem[$row.Service]). The end of its logs:"
    $logs = Split-Path -Parent $row.Log
    foreach ($log in @($row.Log, (Join-Path $logs "$($row.Service).wrapper.log"))) {
        if (Test-Path -LiteralPath $log) {
            Write-Host "--- $log"
            Get-Content -LiteralPath $log -Tail 20 | ForEach-Object { Write-Host "    $_" }
        }
    }
}
$installDir = Get-InstallDir $names[0]
if ($problem.Count -gt 0) {
    Write-Host "Check the settings with: cd '$installDir'; .\venv\Scripts\transcriber.exe doctor"
    exit 1
}

# Each service checked its folders when it started, as its own account (not as you): show what it found.
Write-Host 'What each service found at its start, as its own account (transcriber doctor --as-service --this-host):'
$savedEnvFile = $env:TRANSCRIBER_ENV_FILE
$env:TRANSCRIBER_ENV_FILE = Join-Path $installDir '.env'
Push-Location -LiteralPath $installDir
$saved = $ErrorActionPreference
$ErrorActionPreference = 'Continue'  # PowerShell 5.1 turns a native program's stderr into errors
try {
    & (Join-Path $installDir 'venv\Scripts\transcriber.exe') doctor --as-service --this-host 2>&1 | ForEach-Object { Write-Host "    $_" }
    $doctorCode = $LASTEXITCODE
}
finally {
    $ErrorActionPreference = $saved
    Pop-Location
    $env:TRANSCRIBER_ENV_FILE = $savedEnvFile
}
if ($doctorCode -ne 0) {
    Write-Warning 'A service cannot use a folder it needs (FAIL above): give its account access (docs\windows.md, Network shares), then restart it.'
    exit 1
}
