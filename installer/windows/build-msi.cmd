@echo off
rem Builds target\wix\tutela-agent.msi on Windows with the WiX Toolset 3.x
rem (candle and light on PATH) and a Rust toolchain for x86_64-pc-windows-msvc.
rem Run from the repository root: installer\windows\build-msi.cmd
setlocal
for /f "tokens=3 delims= " %%v in ('findstr /r /c:"^version = " Cargo.toml') do set VERSION=%%~v
if "%VERSION%"=="" (echo build-msi: no version in Cargo.toml & exit /b 1)
cargo build --release --locked -p tutela-agent --target x86_64-pc-windows-msvc || exit /b 1
if not exist target\wix mkdir target\wix
candle -nologo -arch x64 -ext WixUtilExtension -dVersion=%VERSION% ^
  -dAgentExe=target\x86_64-pc-windows-msvc\release\tutela-agent.exe ^
  installer\windows\tutela-agent.wxs -out target\wix\tutela-agent.wixobj || exit /b 1
light -nologo -ext WixUtilExtension target\wix\tutela-agent.wixobj ^
  -out target\wix\tutela-agent-%VERSION%-x64.msi || exit /b 1
echo target\wix\tutela-agent-%VERSION%-x64.msi
