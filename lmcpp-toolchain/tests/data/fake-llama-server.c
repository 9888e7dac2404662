/* The Windows llama-server stand-in of lmcpp-toolchain's test fixtures (the shell script
   `FAKE_SERVER` elsewhere). Whatever its arguments, it prints on stderr what the real
   binary's --version prints and exits 0; with a `fake-failure.txt` beside it, it prints
   that file instead and exits 1 (a build that cannot start on this machine).
   No C runtime, so the program is 3.5 KB and the same bytes on every build:
     x86_64-w64-mingw32-gcc -Os -s -nostdlib -e start -Wl,--no-insert-timestamp \
       -o fake-llama-server.exe fake-llama-server.c -lkernel32
   `cargo xtask wine-test` rebuilds it and fails if the committed file differs. */
#include <windows.h>

static void say(const char *text, DWORD len) {
    DWORD wrote;
    WriteFile(GetStdHandle(STD_ERROR_HANDLE), text, len, &wrote, NULL);
}

void start(void) {
    static const char version[] = "version: 1 (fake)\n";
    static const char failure[] = "fake-failure.txt";
    char path[MAX_PATH + sizeof failure];
    DWORD n = GetModuleFileNameA(NULL, path, MAX_PATH);
    while (n > 0 && path[n - 1] != '\\' && path[n - 1] != '/') n--;
    for (DWORD i = 0; i < sizeof failure; i++) path[n + i] = failure[i];
    HANDLE file = CreateFileA(path, GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING,
                              FILE_ATTRIBUTE_NORMAL, NULL);
    if (file == INVALID_HANDLE_VALUE) {
        say(version, sizeof version - 1);
        ExitProcess(0);
    }
    char text[512];
    DWORD got = 0;
    ReadFile(file, text, sizeof text, &got, NULL);
    CloseHandle(file);
    say(text, got);
    ExitProcess(1);
}
