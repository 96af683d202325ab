#Requires -Version 5.1
#Requires -RunAsAdministrator
<#
.SYNOPSIS
    Installs or upgrades transcriber on this Windows machine as Windows services.

.DESCRIPTION
    Creates a virtual environment under -InstallDir, installs the package from -Source, writes
    .env from .env.example when there is none (an existing .env is never overwritten), migrates
    the database and registers these services with WinSW:

        transcriber-worker   always
        transcriber-beat     unless -NoBeat      (exactly ONE beat in the whole deployment)
        transcriber-watch    unless -NoWatcher
        transcriber-flower   with -WithFlower
        transcriber-metrics  with -WithMetrics   (Prometheus exporter; one per deployment is enough)

    Safe to re-run (that is how you upgrade): it stops the services, upgrades the package,
    rewrites the service configuration and keeps .env. The options of the last run are kept in
    services\install-options.json; an option given now wins. The services are left stopped:
    start them with restart.ps1. Full guide: docs\windows.md.

.EXAMPLE
    .\install.ps1
    First machine: worker, beat and watcher in C:\app.

.EXAMPLE
    .\install.ps1 -NoBeat -NoWatcher -WorkerPool threads -WorkerConcurrency 2
    An additional worker machine.

.EXAMPLE
    .\install.ps1 -WithMetrics
    Also serve Prometheus metrics (METRICS_ADDRESS:METRICS_PORT in .env, 127.0.0.1:9808 by default).

.EXAMPLE
    .\install.ps1 -WinSWPath 'D:\offline\WinSW-x64.exe' -Wheelhouse 'D:\offline\wheels'
    A server without internet access.
#>
[CmdletBinding()]
param(
    # Where the venv, .env, data, logs and service wrappers go.
    [string]$InstallDir = 'C:\app',
    # python.exe to build the venv with (64-bit, 3.11+). Default: py -3.11, py -3, then python on PATH.
    [string]$Python = '',
    # The transcriber source folder (holds pyproject.toml). Default: two levels up from this script.
    [string]$Source = '',
    # solo: one recording at a time. threads: -WorkerConcurrency recordings at once.
    [ValidateSet('solo', 'threads')]
    [string]$WorkerPool = 'solo',
    [ValidateRange(1, 64)]
    [int]$WorkerConcurrency = 1,
    # Additional worker machines: beat and the watcher run on one machine only.
    [switch]$NoBeat,
    [switch]$NoWatcher,
    [switch]$WithFlower,
    [ValidateRange(1, 65535)]
    [int]$FlowerPort = 5555,
    # `transcriber metrics`: every figure comes from the database, so one machine of the deployment runs it.
    [switch]$WithMetrics,
    # A local copy of WinSW-x64.exe v2.12.0 (offline servers); default: download it.
    [string]$WinSWPath = '',
    # A folder of wheels to install from instead of PyPI (offline servers).
    [string]$Wheelhouse = ''
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'  # Invoke-WebRequest in 5.1 is many times slower with a progress bar

$WinSWVersion = '2.12.0'
$WinSWUrl = "https://github.com/winsw/winsw/releases/download/v$WinSWVersion/WinSW-x64.exe"
$Utf8 = New-Object System.Text.UTF8Encoding -ArgumentList $false  # no BOM: .env and XML are read by other tools

function Write-Step([string]$Text) {
    Write-Host ''
    Write-Host "==> $Text" -ForegroundColor Cyan
}

function Get-FullPath([string]$Path) {
    $full = $ExecutionContext.SessionState.Path.GetUnresolvedProviderPathFromPSPath($Path)
    # A trailing backslash would escape the closing quote of a native command's argument.
    if ($full.Length -gt 3) { $full = $full.TrimEnd('\') }
    return $full
}

function Invoke-Program {
    <#
    Runs a program, shows its output (unless -Quiet) and returns its ExitCode and Output lines.
    Its stderr is read as plain text: Windows PowerShell 5.1 turns each stderr line of a native
    program into an error record, which $ErrorActionPreference = 'Stop' would make fatal, and pip
    and transcriber both log to stderr.
    #>
    param(
        [Parameter(Mandatory = $true)][string]$FilePath,
        [string[]]$ArgumentList = @(),
        [switch]$Quiet,
        [string]$FailureMessage = ''
    )
    if (-not (Get-Command -Name $FilePath -ErrorAction SilentlyContinue)) { throw "$FilePath not found" }
    $lines = New-Object System.Collections.Generic.List[string]
    $saved = $ErrorActionPreference
    $ErrorActionPreference = 'Continue'
    try {
        & $FilePath @ArgumentList 2>&1 | ForEach-Object {
            $line = "$_"
            $lines.Add($line)
            if (-not $Quiet) { Write-Host "    $line" }
        }
        $code = $LASTEXITCODE
    }
    finally {
        $ErrorActionPreference = $saved
    }
    if ($FailureMessage -and $code -ne 0) { throw "$FailureMessage (exit code $code)" }
    return [pscustomobject]@{ ExitCode = $code; Output = $lines }
}

function Find-Python([string]$Requested) {
    # The full path of a 64-bit Python 3.11+; ctranslate2 (faster-whisper) has 64-bit wheels only.
    $candidates = New-Object System.Collections.Generic.List[object]
    if ($Requested) {
        $candidates.Add(@($Requested))
    }
    else {
        $launcher = Get-Command -Name 'py.exe' -CommandType Application -ErrorAction SilentlyContinue | Select-Object -First 1
        if ($launcher) {
            $candidates.Add(@($launcher.Source, '-3.11'))
            $candidates.Add(@($launcher.Source, '-3'))
        }
        $onPath = Get-Command -Name 'python.exe' -CommandType Application -ErrorAction SilentlyContinue | Select-Object -First 1
        if ($onPath) { $candidates.Add(@($onPath.Source)) }
    }
    $probe = 'import sys, platform; print(sys.executable); print(*sys.version_info[:2], sep=chr(46)); print(platform.architecture()[0])'
    foreach ($candidate in $candidates) {
        $arguments = @($candidate | Select-Object -Skip 1) + @('-c', $probe)
        try {
            $result = Invoke-Program -FilePath $candidate[0] -ArgumentList $arguments -Quiet
        }
        catch {
            continue  # not there, or not runnable
        }
        # The Microsoft Store's python.exe alias exits 9009 here, so it is skipped.
        if ($result.ExitCode -ne 0 -or $result.Output.Count -lt 3) { continue }
        $exe, $version, $bits = $result.Output[$result.Output.Count - 3], $result.Output[$result.Output.Count - 2], $result.Output[$result.Output.Count - 1]
        if ([version]$version -ge [version]'3.11' -and $bits -eq '64bit') {
            Write-Host "    Python $version at $exe"
            if ($exe -like (Join-Path $env:SystemDrive 'Users\*')) {
                Write-Warning "$exe is a per-user Python: a service account other than LocalSystem may not be able to run it. Prefer Python installed 'for all users'."
            }
            return $exe
        }
        Write-Warning "$($candidate -join ' ') is Python $version $bits; 64-bit Python 3.11 or newer is needed"
    }
    throw "No 64-bit Python 3.11+ found. Install it from python.org ('Install for all users' and the py launcher), or pass -Python 'C:\path\to\python.exe'."
}

function Get-WinSW([string]$LocalCopy, [string]$Destination) {
    # One pinned WinSW, kept in the services folder; each service gets a renamed copy of it.
    if ($LocalCopy) {
        Copy-Item -LiteralPath (Get-FullPath $LocalCopy) -Destination $Destination -Force
    }
    elseif (-not (Test-Path -LiteralPath $Destination)) {
        Write-Host "    downloading $WinSWUrl"
        [Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor [Net.SecurityProtocolType]::Tls12
        $partial = "$Destination.download"
        try {
            Invoke-WebRequest -Uri $WinSWUrl -OutFile $partial -UseBasicParsing
        }
        catch {
            throw "Cannot download WinSW ($($_.Exception.Message)). On a server without internet access, copy WinSW-x64.exe v$WinSWVersion here and pass -WinSWPath."
        }
        Move-Item -LiteralPath $partial -Destination $Destination -Force
    }
    Unblock-File -LiteralPath $Destination
    $version = "$((Get-Item -LiteralPath $Destination).VersionInfo.FileVersion)"
    $hash = (Get-FileHash -LiteralPath $Destination -Algorithm SHA256).Hash
    Write-Host "    WinSW $version, SHA-256 $hash"
    if ($version -and -not $version.StartsWith('2.')) {
        Write-Warning "Expected WinSW 2.x (these scripts write its v2 XML format), found $version."
    }
}

function Get-EnvSetting([string]$Name, [string]$Default) {
    # The last NAME=value line of .env (as the settings read it), without quotes; the default when absent or empty.
    $found = @(Select-String -LiteralPath $envFile -Pattern "^\s*$Name\s*=\s*(.*?)\s*$" | Select-Object -Last 1)
    if ($found.Count -eq 0) { return $Default }
    $value = ($found[0].Matches[0].Groups[1].Value -replace '\s+#.*$', '').Trim('"', "'")
    if ($value) { return $value } else { return $Default }
}

function ConvertTo-XmlText([string]$Text) {
    return [System.Security.SecurityElement]::Escape($Text)
}

function New-ServiceXml {
    # The WinSW v2 configuration of one service. WinSW quotes an <argument> that holds spaces.
    param([string]$Id, [string]$Description, [string[]]$Arguments)
    $argumentXml = ($Arguments | ForEach-Object { "  <argument>$(ConvertTo-XmlText $_)</argument>" }) -join "`r`n"
    $envFile = Join-Path $InstallDir '.env'
    return @"
<!-- Written by deploy\windows\install.ps1 for WinSW $WinSWVersion. Re-run install.ps1 instead of editing: it rewrites this file. -->
<service>
  <id>$Id</id>
  <name>$(ConvertTo-XmlText ($Id -replace '-', ' '))</name>
  <description>$(ConvertTo-XmlText $Description)</description>
  <executable>$(ConvertTo-XmlText $transcriberExe)</executable>
$argumentXml
  <workingdirectory>$(ConvertTo-XmlText $InstallDir)</workingdirectory>
  <env name="TRANSCRIBER_ENV_FILE" value="$(ConvertTo-XmlText $envFile)"/>
  <env name="PYTHONUNBUFFERED" value="1"/>
  <env name="PYTHONUTF8" value="1"/>
  <startmode>Automatic</startmode>
  <delayedAutoStart>true</delayedAutoStart>
  <onfailure action="restart" delay="10 sec"/>
  <onfailure action="restart" delay="30 sec"/>
  <onfailure action="restart" delay="60 sec"/>
  <resetfailure>1 hour</resetfailure>
  <!-- Stop: Ctrl+C to the process tree, then up to 90 s for a warm shutdown before it is killed.
       The parent first: the worker must hand its recording back before its model process goes. -->
  <stoptimeout>90 sec</stoptimeout>
  <stopparentprocessfirst>true</stopparentprocessfirst>
  <logpath>$(ConvertTo-XmlText $logsDir)</logpath>
  <log mode="roll-by-size">
    <sizeThreshold>10240</sizeThreshold>
    <keepFiles>8</keepFiles>
  </log>
</service>
"@
}

function Register-TranscriberService {
    param([string]$Role, [string]$Description, [string[]]$Arguments)
    $id = "transcriber-$Role"
    $exe = Join-Path $servicesDir "$id.exe"
    for ($attempt = 1; ; $attempt++) {
        try {
            Copy-Item -LiteralPath $winswExe -Destination $exe -Force
            break
        }
        catch {
            if ($attempt -ge 10) { throw }
            Start-Sleep -Seconds 1  # a wrapper that has just stopped may hold its exe for a moment
        }
    }
    $xml = New-ServiceXml -Id $id -Description $Description -Arguments $Arguments
    [System.IO.File]::WriteAllText((Join-Path $servicesDir "$id.xml"), $xml, $Utf8)

    $existing = Get-CimInstance -ClassName Win32_Service -Filter "Name='$id'"
    if (-not $existing) {
        Write-Host "    registering $id"
        $null = Invoke-Program -FilePath $exe -ArgumentList @('install') -FailureMessage "WinSW could not register $id"
        return
    }
    $registeredExe = $existing.PathName.Trim().Trim('"')
    if ($registeredExe -ne $exe) {
        throw "$id is already registered by another installation ($registeredExe). Remove it with that installation's uninstall.ps1, then re-run."
    }
    # WinSW applies these only when it registers a service. Refreshing them here instead of
    # re-registering keeps the service's log-on account (set by hand for UNC shares).
    Write-Host "    updating $id"
    $null = Invoke-Program -FilePath 'sc.exe' -ArgumentList @('config', $id, 'start=', 'delayed-auto', 'DisplayName=', ($id -replace '-', ' ')) -Quiet -FailureMessage "sc.exe config $id failed"
    $null = Invoke-Program -FilePath 'sc.exe' -ArgumentList @('description', $id, $Description) -Quiet -FailureMessage "sc.exe description $id failed"
    $null = Invoke-Program -FilePath 'sc.exe' -ArgumentList @('failure', $id, 'reset=', '3600', 'actions=', 'restart/10000/restart/30000/restart/60000') -Quiet -FailureMessage "sc.exe failure $id failed"
}

# ------------------------------------------------------------------ options

if (-not [Environment]::Is64BitOperatingSystem) { throw 'transcriber needs 64-bit Windows.' }
$InstallDir = Get-FullPath $InstallDir
if (-not $Source) { $Source = Split-Path -Parent (Split-Path -Parent $PSScriptRoot) }
$Source = Get-FullPath $Source
if (-not (Test-Path -LiteralPath (Join-Path $Source 'pyproject.toml'))) {
    throw "$Source is not the transcriber source folder (no pyproject.toml): pass -Source."
}
$servicesDir = Join-Path $InstallDir 'services'
$logsDir = Join-Path $InstallDir 'logs'
$dataDir = Join-Path $InstallDir 'data'
$envFile = Join-Path $InstallDir '.env'
$venvDir = Join-Path $InstallDir 'venv'
$venvPython = Join-Path $venvDir 'Scripts\python.exe'
$transcriberExe = Join-Path $venvDir 'Scripts\transcriber.exe'
$optionsFile = Join-Path $servicesDir 'install-options.json'

$opt = @{
    WorkerPool        = $WorkerPool
    WorkerConcurrency = $WorkerConcurrency
    NoBeat            = [bool]$NoBeat
    NoWatcher         = [bool]$NoWatcher
    WithFlower        = [bool]$WithFlower
    FlowerPort        = $FlowerPort
    WithMetrics       = [bool]$WithMetrics
    Wheelhouse        = $(if ($Wheelhouse) { Get-FullPath $Wheelhouse } else { '' })
}
if (Test-Path -LiteralPath $optionsFile) {
    # A re-run keeps this machine's choices (e.g. -NoBeat on a worker-only machine) unless given again.
    $previous = Get-Content -LiteralPath $optionsFile -Raw | ConvertFrom-Json
    foreach ($name in @($opt.Keys)) {
        $property = $previous.PSObject.Properties[$name]
        if ($property -and -not $PSBoundParameters.ContainsKey($name)) { $opt[$name] = $property.Value }
    }
}
if ($opt.WorkerPool -eq 'solo' -and $opt.WorkerConcurrency -ne 1) {
    if ($PSBoundParameters.ContainsKey('WorkerConcurrency')) {
        throw '-WorkerPool solo runs one recording at a time: use -WorkerPool threads with -WorkerConcurrency.'
    }
    $opt.WorkerConcurrency = 1
}

Write-Host "transcriber install: $InstallDir from $Source"

# ------------------------------------------------------------------ stop what runs

Write-Step 'Services'
$registered = @(@('worker', 'beat', 'watch', 'flower', 'metrics') | Where-Object { Get-Service -Name "transcriber-$_" -ErrorAction SilentlyContinue })
foreach ($role in $registered) {
    $service = Get-Service -Name "transcriber-$role"
    if ($service.Status -ne 'Stopped') {
        # A running worker hands its recording back to the queue (progress kept); up to 90 s.
        Write-Host "    stopping $($service.Name) for the upgrade"
        Stop-Service -Name $service.Name
    }
}
if ($registered.Count -eq 0) { Write-Host '    none registered yet' }

# ------------------------------------------------------------------ Python and the package

Write-Step 'Virtual environment'
foreach ($dir in @($InstallDir, $servicesDir, $logsDir, $dataDir)) {
    if (-not (Test-Path -LiteralPath $dir)) { $null = New-Item -ItemType Directory -Path $dir }
}
if (Test-Path -LiteralPath $venvPython) {
    Write-Host "    reusing $venvDir (delete that folder to rebuild it with another Python)"
}
else {
    $basePython = Find-Python $Python
    $null = Invoke-Program -FilePath $basePython -ArgumentList @('-m', 'venv', $venvDir) -FailureMessage 'Creating the virtual environment failed'
}

Write-Step "Installing transcriber from $Source"
$pipArguments = @('-m', 'pip', 'install', '--upgrade', '--disable-pip-version-check')
if ($opt.Wheelhouse) { $pipArguments += @('--no-index', '--find-links', $opt.Wheelhouse) }
$pipArguments += $Source
$null = Invoke-Program -FilePath $venvPython -ArgumentList $pipArguments -FailureMessage 'pip install failed (see above)'
if (-not (Test-Path -LiteralPath $transcriberExe)) { throw "pip did not create $transcriberExe" }

# ------------------------------------------------------------------ settings

Write-Step 'Settings'
if (Test-Path -LiteralPath $envFile) {
    Write-Host "    keeping $envFile (an existing .env is never overwritten)"
}
else {
    # Absolute paths, so that operator commands work from any folder and every service agrees.
    $paths = @{
        DATA_DIR          = $dataDir
        WATCH_DIR         = Join-Path $InstallDir 'inbox'
        OUTPUT_DIR        = Join-Path $InstallDir 'transcripts'
        WHISPER_MODEL_DIR = Join-Path $InstallDir 'models'
    }
    $lines = foreach ($line in (Get-Content -LiteralPath (Join-Path $Source '.env.example') -Encoding UTF8)) {
        if ($line -match '^([A-Z_]+)=' -and $paths.ContainsKey($Matches[1])) { "$($Matches[1])=$($paths[$Matches[1]])" } else { $line }
    }
    [System.IO.File]::WriteAllLines($envFile, [string[]]$lines, $Utf8)
    foreach ($dir in $paths.Values) {
        if (-not (Test-Path -LiteralPath $dir)) { $null = New-Item -ItemType Directory -Path $dir }
    }
    # It will hold passwords: Administrators (S-1-5-32-544) may change it, SYSTEM (S-1-5-18, the services' account) read it.
    $null = Invoke-Program -FilePath 'icacls.exe' -ArgumentList @($envFile, '/inheritance:r', '/grant:r', '*S-1-5-32-544:(F)', '*S-1-5-18:(R)') -Quiet -FailureMessage "Could not restrict access to $envFile"
    Write-Host "    wrote $envFile from .env.example (readable by Administrators and SYSTEM only)"
}
$flowerAuthSet = [bool](Select-String -LiteralPath $envFile -Pattern '^\s*FLOWER_BASIC_AUTH\s*=\s*\S' -Quiet)
# Where `transcriber metrics` listens: read by the service from .env, shown here in its description.
$metricsAddress = Get-EnvSetting -Name 'METRICS_ADDRESS' -Default '127.0.0.1'
$metricsPort = Get-EnvSetting -Name 'METRICS_PORT' -Default '9808'

Write-Step 'Database schema (transcriber db upgrade)'
$savedEnvFile = $env:TRANSCRIBER_ENV_FILE
$env:TRANSCRIBER_ENV_FILE = $envFile
Push-Location -LiteralPath $InstallDir  # the services' working folder
try {
    $dbReady = (Invoke-Program -FilePath $transcriberExe -ArgumentList @('db', 'upgrade')).ExitCode -eq 0
}
finally {
    Pop-Location
    $env:TRANSCRIBER_ENV_FILE = $savedEnvFile
}
if (-not $dbReady) {
    Write-Warning ("The database is not migrated yet (see the message above): DATABASE_URL in $envFile most likely " +
        'still points at a server that is not there. Set DATABASE_URL and CELERY_BROKER_URL (or leave both empty ' +
        "for the single-server default), then run: cd '$InstallDir'; .\venv\Scripts\transcriber.exe db upgrade" +
        ' (or re-run this script). Continuing with the services.')
}

# ------------------------------------------------------------------ services

Write-Step 'Registering services (WinSW)'
$winswExe = Join-Path $servicesDir "WinSW-$WinSWVersion-x64.exe"
Get-WinSW -LocalCopy $WinSWPath -Destination $winswExe

$workerArguments = @('worker', "--pool=$($opt.WorkerPool)")
$workerText = 'one recording at a time'
if ($opt.WorkerPool -eq 'threads') {
    $workerArguments += "--concurrency=$($opt.WorkerConcurrency)"
    $workerText = "$($opt.WorkerConcurrency) recordings at a time"
}
$plan = @(
    @{ Role = 'worker'; Wanted = $true; Arguments = $workerArguments
        Description = "transcriber: Celery worker that transcribes queued recordings ($($opt.WorkerPool) pool, $workerText)." },
    @{ Role = 'beat'; Wanted = -not $opt.NoBeat; Arguments = @('beat', "--schedule=$(Join-Path $dataDir 'celerybeat-schedule')")
        Description = 'transcriber: Celery beat, rescues stuck work and dispatches queued recordings. Exactly one per deployment.' },
    @{ Role = 'watch'; Wanted = -not $opt.NoWatcher; Arguments = @('watch')
        Description = 'transcriber: registers recordings dropped into WATCH_DIR.' },
    @{ Role = 'flower'; Wanted = $opt.WithFlower; Arguments = @('flower', "--port=$($opt.FlowerPort)")
        Description = "transcriber: Flower monitoring on 127.0.0.1:$($opt.FlowerPort)." },
    @{ Role = 'metrics'; Wanted = $opt.WithMetrics; Arguments = @('metrics')
        Description = "transcriber: Prometheus metrics on ${metricsAddress}:$metricsPort (METRICS_ADDRESS, METRICS_PORT in .env)." }
)
foreach ($service in $plan) {
    if ($service.Wanted) {
        Register-TranscriberService -Role $service.Role -Description $service.Description -Arguments $service.Arguments
    }
    elseif (Get-Service -Name "transcriber-$($service.Role)" -ErrorAction SilentlyContinue) {
        & (Join-Path $PSScriptRoot 'uninstall.ps1') -InstallDir $InstallDir -Service $service.Role
    }
}
[System.IO.File]::WriteAllText($optionsFile, ($opt | ConvertTo-Json), $Utf8)

# ------------------------------------------------------------------ next steps

$names = @($plan | Where-Object { $_.Wanted } | ForEach-Object { "transcriber-$($_.Role)" })
$restart = Join-Path $PSScriptRoot 'restart.ps1'
Write-Step 'Done'
Write-Host "Installed in $InstallDir. Services (stopped; they start at boot and restart after a failure):"
Write-Host "    $($names -join ', ')"
if ($opt.WithFlower -and -not $flowerAuthSet) {
    Write-Warning "transcriber-flower will not start until FLOWER_BASIC_AUTH=user:password is set in $envFile."
}
Write-Host ''
Write-Host 'Next steps:'
Write-Host "  1. Edit the settings: notepad '$envFile'"
Write-Host '     DATABASE_URL, CELERY_BROKER_URL (both empty = single server, no Postgres/Redis), WATCH_DIR, OUTPUT_DIR'
if ($opt.WithFlower) { Write-Host '     and FLOWER_BASIC_AUTH=user:password' }
if ($dbReady) {
    Write-Host "  2. Check them:  cd '$InstallDir'; .\venv\Scripts\transcriber.exe doctor"
}
else {
    Write-Host "  2. Migrate and check:  cd '$InstallDir'; .\venv\Scripts\transcriber.exe db upgrade; .\venv\Scripts\transcriber.exe doctor"
}
Write-Host "  3. Start the services:  & '$restart'"
if ($opt.WithFlower) { Write-Host "  4. Flower: http://127.0.0.1:$($opt.FlowerPort) on this server (user and password from FLOWER_BASIC_AUTH)" }
if ($opt.WithMetrics) {
    Write-Host "  Metrics: http://${metricsAddress}:$metricsPort/metrics (Prometheus config, alert rules and a Grafana dashboard: $(Join-Path $Source 'deploy'))"
    if ($metricsAddress -eq '127.0.0.1' -or $metricsAddress -eq 'localhost') {
        Write-Host '     A Prometheus on another machine: set METRICS_ADDRESS=0.0.0.0 in .env, restart transcriber-metrics and allow'
        Write-Host "     only that machine in: New-NetFirewallRule -DisplayName 'transcriber metrics' -Direction Inbound -Protocol TCP -LocalPort $metricsPort -RemoteAddress <prometheus-ip> -Action Allow"
    }
}
Write-Host "Logs: $logsDir\<service>.err.log    Guide: $(Join-Path $Source 'docs\windows.md')"
